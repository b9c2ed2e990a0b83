"""System checks of ``settings.MOLT_ACCEL`` and of the views that ``@molt_offload`` decorated,
registered by the ``molt_accel`` app (:mod:`molt_accel.apps`) and run by ``manage.py check``,
``runserver``, ``migrate`` and the test runner.

======================  ===========================================================================
``molt_accel.E001``     ``MOLT_ACCEL`` is not a dict
``molt_accel.E002``     ``MOLT_ACCEL`` has a key the package does not know (a typo)
``molt_accel.E003``     a ``MOLT_ACCEL`` value is invalid
``molt_accel.E004``     the worker program is missing or not executable
``molt_accel.E005``     the exports manifest cannot be read or is not JSON
``molt_accel.E006``     the worker refuses its exports manifest (``--print-exports`` fails)
``molt_accel.E007``     a view in the URLconf calls an entry the exports manifest does not enable
``molt_accel.W001``     attached (``SOCKET``) to a worker whose program is not on this machine: the
                        views' entries are not checked
``molt_accel.W002``     (``--deploy``) ``TIMEOUT_MS`` is not set: every call gets the 1 s default
``molt_accel.W003``     (``--deploy``) shared memory without ``STRICT_SHM``: a failure to attach
                        falls back to stdio, one worker per Django process, without an error
``molt_accel.W004``     (``--deploy``) the ``SOCKET`` directory is open to other users
``molt_accel.W005``     (``--deploy``) the ``METRICS_PATH`` or ``METRICS_DIR`` directory is missing,
                        not writable, or writable by other users
======================  ===========================================================================

The entry check asks the worker itself: it runs ``WORKER_CMD --print-exports`` (with
``--exports EXPORTS`` when set), which prints the manifest the worker would run with, embedded
or given, after checking it against the worker's own entries, and exits. No worker is started.
``manage.py check --tag molt_accel`` runs these alone. Silence a check the Django way: ``SILENCED_SYSTEM_CHECKS = ["molt_accel.W002"]``.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .django import SETTINGS_KEYS, Offload, _Settings, offload_of

__all__ = ["TAG", "check_settings", "check_deploy", "offloaded_views", "OffloadedView", "worker_exports"]

#: The checks' tag: ``manage.py check --tag molt_accel`` runs only these.
TAG = "molt_accel"
#: How long ``--print-exports`` may take; it only reads and checks the manifest.
_PRINT_EXPORTS_TIMEOUT_S = 10.0
_OBJ = "settings.MOLT_ACCEL"


@dataclass(frozen=True)
class OffloadedView:
    """A view of the URLconf that ``@molt_offload`` decorated, and where it is routed."""

    route: str
    name: str
    offload: Offload


def offloaded_views(urlconf: str | None = None) -> list[OffloadedView]:
    """Every ``@molt_offload`` view that ``urlconf`` (default ``ROOT_URLCONF``) routes to,
    found by walking its resolver, includes too."""
    from django.urls import get_resolver

    return list(_walk(get_resolver(urlconf).url_patterns, ""))


def _walk(patterns: Sequence[Any], prefix: str) -> Iterator[OffloadedView]:
    from django.urls import URLPattern, URLResolver

    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            offload = offload_of(pattern.callback)
            if offload is not None:
                callback = pattern.callback
                name = f"{callback.__module__}.{getattr(callback, '__qualname__', callback)}"
                yield OffloadedView(route=route, name=name, offload=offload)


class ExportsUnavailable(Exception):
    """Why the manifest could not be learnt; ``check_id`` is the check it fails."""

    def __init__(self, check_id: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.check_id = check_id
        self.hint = hint


def worker_exports(conf: _Settings) -> Mapping[str, Any]:
    """The manifest the configured worker runs with, from its ``--print-exports``; raises
    :class:`ExportsUnavailable`."""
    command = conf.client.worker_command(["--print-exports"])
    exports = conf.client.exports
    if exports is not None:
        try:
            json.loads(Path(exports).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ExportsUnavailable(
                "molt_accel.E005",
                f"the exports manifest {exports} cannot be read: {exc.strerror or exc}",
                "Set MOLT_ACCEL['EXPORTS'] to the path of the worker's molt_exports.json, or remove "
                "it to run with the manifest the worker embeds.",
            ) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ExportsUnavailable(
                "molt_accel.E005",
                f"the exports manifest {exports} is not JSON: {exc}",
                "docs/operations.md describes the manifest's format.",
            ) from None
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_PRINT_EXPORTS_TIMEOUT_S,
            check=False,
            env={**os.environ, "RUST_LOG": "off"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportsUnavailable(
            "molt_accel.E006",
            f"`{' '.join(command)}` failed: {exc}",
            "The worker program must answer --print-exports (molt-worker's App::run does).",
        ) from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ExportsUnavailable(
            "molt_accel.E006",
            f"the worker refuses its exports manifest: {reason[0] if reason else f'exit {done.returncode}'}",
            "Fix the manifest (an entry the worker does not have, a bad option) or the extra "
            "arguments of MOLT_ACCEL['WORKER_CMD'].",
        )
    try:
        manifest = json.loads(done.stdout)
    except json.JSONDecodeError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("entries"), dict):
        raise ExportsUnavailable(
            "molt_accel.E006",
            f"`{' '.join(command)}` did not print an exports manifest",
            "WORKER_CMD must name a molt worker (a binary built on molt-worker's App).",
        )
    return manifest


def _program_problem(conf: _Settings) -> str | None:
    """Why the worker program cannot be run, or ``None``."""
    program = conf.client.worker_command([])[0]
    if os.sep in program:
        path = Path(program)
        if not path.is_file():
            return f"the worker program {program} does not exist"
        if not os.access(path, os.X_OK):
            return f"the worker program {program} is not executable"
        return None
    if shutil.which(program) is None:
        return f"the worker program {program!r} is not on PATH"
    return None


def _load() -> tuple[_Settings | None, list[CheckMessage]]:
    raw = getattr(settings, "MOLT_ACCEL", {})
    if not isinstance(raw, Mapping):
        return None, [
            Error(
                f"MOLT_ACCEL must be a dict, not {type(raw).__name__}",
                hint='MOLT_ACCEL = {"WORKER_CMD": [...], "EXPORTS": "molt_exports.json"}',
                obj=_OBJ,
                id="molt_accel.E001",
            )
        ]
    messages: list[CheckMessage] = []
    for key in sorted(set(raw) - SETTINGS_KEYS, key=str):
        close = difflib.get_close_matches(str(key), sorted(SETTINGS_KEYS), n=1)
        hint = f"Did you mean {close[0]!r}?" if close else f"The keys are {', '.join(sorted(SETTINGS_KEYS))}."
        messages.append(Error(f"MOLT_ACCEL has an unknown key {key!r}", hint=hint, obj=_OBJ, id="molt_accel.E002"))
    if messages:
        return None, messages
    try:
        return _Settings.load(), []
    except ImproperlyConfigured as exc:
        return None, [
            Error(
                str(exc),
                hint="molt_accel.django's docstring lists every key and its values.",
                obj=_OBJ,
                id="molt_accel.E003",
            )
        ]


def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """``MOLT_ACCEL`` is valid, the worker program runs, and every entry a ``@molt_offload``
    view of the URLconf calls is enabled in the worker's manifest."""
    conf, messages = _load()
    if conf is None:
        return messages
    attached = conf.client.socket is not None
    problem = _program_problem(conf)
    views = offloaded_views()
    if problem is not None:
        if attached:
            # The worker runs elsewhere (a systemd unit, a sidecar): nothing to run here.
            if views:
                return [
                    Warning(
                        f"the views' entries are not checked: {problem}, and the client attaches to "
                        f"a worker at {conf.client.socket}",
                        hint="Install the worker program here, or silence molt_accel.W001 if it "
                        "only runs in another container.",
                        obj=_OBJ,
                        id="molt_accel.W001",
                    )
                ]
            return []
        return [
            Error(
                problem,
                hint="Build it (cargo build), or name it in MOLT_ACCEL['WORKER_CMD'] or in the "
                "MOLT_WORKER_BIN environment variable.",
                obj=_OBJ,
                id="molt_accel.E004",
            )
        ]
    try:
        manifest = worker_exports(conf)
    except ExportsUnavailable as exc:
        return [Error(str(exc), hint=exc.hint, obj=_OBJ, id=exc.check_id)]
    enabled = sorted(manifest["entries"])
    for view in views:
        entry = view.offload.entry
        if entry in manifest["entries"]:
            continue
        close = difflib.get_close_matches(entry, enabled, n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        hint += f"The manifest enables {', '.join(enabled) or 'no entry'}."
        messages.append(
            Error(
                f"view {view.name} (route {view.route!r}) calls entry {entry!r}, which the worker's "
                "exports manifest does not enable",
                hint=hint,
                obj=view.name,
                id="molt_accel.E007",
            )
        )
    return messages


def check_deploy(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """What ``manage.py check --deploy`` adds: settings that are fine in development and a
    risk in production."""
    conf, _ = _load()
    if conf is None:
        return []  # check_settings reports it
    raw: Mapping[str, Any] = getattr(settings, "MOLT_ACCEL", {})
    messages: list[CheckMessage] = []
    if "TIMEOUT_MS" not in raw:
        messages.append(
            Warning(
                "MOLT_ACCEL['TIMEOUT_MS'] is not set: every call without its own timeout_ms gets 1000 ms",
                hint="Set it to the deadline your slowest offloaded endpoint may take.",
                obj=_OBJ,
                id="molt_accel.W002",
            )
        )
    if conf.client.transport == "shm" and not conf.client.strict_shm:
        messages.append(
            Warning(
                "shared memory without STRICT_SHM: a client that cannot attach falls back to a "
                "stdio worker of its own, without an error",
                hint="Set MOLT_ACCEL['STRICT_SHM'] = True, so that a broken attachment shows as 503s.",
                obj=_OBJ,
                id="molt_accel.W003",
            )
        )
    if conf.client.socket is not None:
        directory = Path(conf.client.socket).parent
        try:
            mode = directory.stat().st_mode
        except OSError:
            mode = None  # the worker creates it 0700
        if mode is not None and mode & (stat.S_IRWXG | stat.S_IRWXO):
            messages.append(
                Warning(
                    f"the socket directory {directory} has mode {stat.filemode(mode)}: other users "
                    "can connect to the worker and call its entries",
                    hint="Give it mode 0700 (systemd: RuntimeDirectoryMode=0700), owned by the user "
                    "that runs Django and the worker.",
                    obj=_OBJ,
                    id="molt_accel.W004",
                )
            )
    targets = []
    if conf.metrics_path is not None:
        targets.append(("METRICS_PATH", Path(conf.metrics_path).parent))
    if conf.client.metrics_dir is not None:
        targets.append(("METRICS_DIR", Path(conf.client.metrics_dir)))
    for key, directory in targets:
        problem = _directory_problem(directory)
        if problem is not None:
            messages.append(
                Warning(
                    f"MOLT_ACCEL['{key}']: {problem}",
                    hint="Metrics go to a directory that exists, that the Django user can write "
                    "and that other users cannot.",
                    obj=_OBJ,
                    id="molt_accel.W005",
                )
            )
    return messages


register(TAG)(check_settings)
register(TAG, deploy=True)(check_deploy)


def _directory_problem(directory: Path) -> str | None:
    try:
        mode = directory.stat().st_mode
    except OSError:
        return f"the directory {directory} does not exist"
    if not stat.S_ISDIR(mode):
        return f"{directory} is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"the directory {directory} is not writable by this user"
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        return f"the directory {directory} is writable by every user"
    return None
