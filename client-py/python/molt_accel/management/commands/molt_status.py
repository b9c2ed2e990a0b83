"""``manage.py molt_status``: whether each worker the project uses answers, and its replies per
entry and status (the worker's ``molt_worker_replies_total`` counters).

Meant for an attached worker (``SOCKET``): the command connects to the one worker every Django
process shares. Without ``SOCKET`` each Django process spawns a worker of its own, and this
command reports on the one it spawns for itself (alive, entries enabled, counters at zero).
Exits 1 if a worker does not answer, so it fits a health check script.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from molt_accel import MoltError
from molt_accel.django import _current_settings, get_client

_REPLIES = re.compile(r'^molt_worker_replies_total\{entry="((?:[^"\\]|\\.)*)",status="([^"]*)"\} (\d+)$')
_STATUS_TIMEOUT_MS = 2000


def reply_counts(prometheus_text: str) -> dict[str, dict[str, int]]:
    """``{entry: {status: replies}}`` from a worker's ``__metrics__`` text."""
    counts: dict[str, dict[str, int]] = {}
    for line in prometheus_text.splitlines():
        match = _REPLIES.match(line)
        if match:
            entry, status, value = match.groups()
            counts.setdefault(entry, {})[status] = int(value)
    return counts


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no types
    help = "Prints whether each molt worker of MOLT_ACCEL answers, and its replies per entry and status."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json", help="one JSON object instead of text")
        parser.add_argument(
            "--transport", action="append", help="the transports to ask (default: TRANSPORT and those the views name)"
        )

    def handle(self, *args: Any, as_json: bool, transport: list[str] | None, **options: Any) -> None:
        try:
            transports = transport or _transports_in_use()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        report = {name: _status(name) for name in transports}
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
        else:
            for name, status in report.items():
                self.stdout.write(_text(name, status))
        if not all(status["ok"] for status in report.values()):
            raise CommandError("a worker does not answer", returncode=1)


def _transports_in_use() -> list[str]:
    from molt_accel.checks import offloaded_views

    default = _current_settings().client.transport
    named = {view.offload.transport for view in offloaded_views() if view.offload.transport}
    return [default, *sorted(named - {default})]


def _status(transport: str) -> dict[str, Any]:
    conf = _current_settings().client
    status: dict[str, Any] = {"ok": False, "attached": transport == "shm" and conf.socket is not None}
    if status["attached"]:
        status["socket"] = conf.socket
    try:
        client = get_client(transport)
        client.ping(timeout_ms=_STATUS_TIMEOUT_MS)
        text = client.call("__metrics__", b"", codec="raw", timeout_ms=_STATUS_TIMEOUT_MS)
    except MoltError as exc:
        status["error"] = f"{type(exc).__name__}: {exc.safe_message}"
        return status
    status["ok"] = True
    if client.worker_pid is not None:
        status["pid"] = client.worker_pid
    status["replies"] = reply_counts(text.decode("utf-8", "replace"))
    return status


def _text(transport: str, status: dict[str, Any]) -> str:
    where = f"attached at {status['socket']}" if status["attached"] else "spawned by this command"
    if not status["ok"]:
        return f"{transport}: DOWN ({where}): {status['error']}"
    lines = [f"{transport}: ok ({where}{', pid ' + str(status['pid']) if 'pid' in status else ''})"]
    for entry, by_status in sorted(status["replies"].items()):
        if entry.startswith("__"):
            continue  # the worker's own entries (this command's __metrics__ calls)
        counts = ", ".join(f"{name} {count}" for name, count in sorted(by_status.items()) if count)
        lines.append(f"  {entry}: {counts or 'no replies'}")
    return "\n".join(lines)
