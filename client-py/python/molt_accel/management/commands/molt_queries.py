"""``manage.py molt_queries``: export the offloaded querysets' SQL into the worker's manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import autodiscover_modules

from molt_accel.querysets import QueryNotOffloadable, exported_queries, registered_queries


class Command(BaseCommand):  # type: ignore[misc]  # django ships no types here
    help = (
        "Compiles every registered offloaded query (molt_accel.querysets) with its samples and "
        "writes the statements into the exports manifest's settings.database.queries: the "
        "worker runs only SQL listed there. Restart the worker after exporting."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--manifest",
            action="append",
            dest="manifests",
            help="exports manifest to update (repeatable; default: MOLT_ACCEL['EXPORTS'])",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="change nothing; exit with an error if a manifest is not up to date",
        )

    def handle(self, *args: Any, manifests: list[str] | None, check: bool, **options: Any) -> None:
        autodiscover_modules("molt_queries")
        if not manifests:
            exports = getattr(settings, "MOLT_ACCEL", {}).get("EXPORTS")
            if not exports:
                raise CommandError("no manifest: pass --manifest or set MOLT_ACCEL['EXPORTS']")
            manifests = [exports]
        try:
            queries = exported_queries(registered_queries().values())
        except QueryNotOffloadable as exc:
            raise CommandError(str(exc)) from None
        stale: list[str] = []
        for name in manifests:
            path = Path(name)
            try:
                manifest = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise CommandError(f"{path}: cannot read the manifest ({type(exc).__name__})") from None
            database = manifest.setdefault("settings", {}).setdefault("database", {})
            if database.get("queries") == queries:
                continue
            if check:
                stale.append(str(path))
                continue
            database["queries"] = queries
            path.write_text(json.dumps(manifest, indent=2) + "\n")
            self.stdout.write(f"{path}: {len(queries)} queries exported")
        if stale:
            raise CommandError(f"not up to date (run manage.py molt_queries): {', '.join(stale)}")
