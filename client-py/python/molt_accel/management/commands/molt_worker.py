"""``manage.py molt_worker``: runs the settings' worker attached on a socket, in the
foreground, as the command of a systemd unit, a container or a development terminal.

The Python process is replaced by the worker (``exec``): signals (SIGTERM from systemd or
Kubernetes, Ctrl-C) reach the worker itself, and its exit status is the command's.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from molt_accel.django import attached_worker_command


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no types
    help = (
        "Runs the molt worker of MOLT_ACCEL (WORKER_CMD, EXPORTS) listening on MOLT_ACCEL['SOCKET'] "
        "(or --socket), for clients that attach to it. Arguments after -- go to the worker, "
        "e.g. `manage.py molt_worker -- --log-format json --compute-threads 4`."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--socket", help="the control socket to listen on (default: MOLT_ACCEL['SOCKET'])")
        parser.add_argument(
            "--print-command", action="store_true", help="print the worker's command line instead of running it"
        )
        parser.add_argument("worker_args", nargs=argparse.REMAINDER, help="arguments for the worker, after --")

    def handle(self, *args: Any, socket: str | None, print_command: bool, worker_args: list[str], **options: Any) -> None:
        if worker_args[:1] == ["--"]:
            worker_args = worker_args[1:]
        try:
            command = attached_worker_command(socket, worker_args)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if print_command:
            self.stdout.write(shlex.join(command))
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            raise CommandError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
