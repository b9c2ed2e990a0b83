"""``manage.py seed_items``: fill ``demoapp_item`` with deterministic rows."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction

from demoapp.models import Item

# Row i (0-based) belongs to user 1 + i % users. Statuses 60/30/10 % open/closed/archived;
# every 200 consecutive rows share a created_at, so a user's items tie on it and the id
# decides their order (as the page's cursor does); the microseconds exercise Django's
# millisecond truncation of datetimes in JSON. Some titles need JSON escapes.
SEED_SQL = """
INSERT INTO demoapp_item (id, user_id, category, status, title, score, created_at)
SELECT i + 1,
       1 + i %% %(users)s,
       'cat-' || (i %% 32),
       CASE WHEN i / 100 %% 10 < 6 THEN 'open' WHEN i / 100 %% 10 < 9 THEN 'closed' ELSE 'archived' END,
       'item ' || i || CASE WHEN i %% 97 = 0 THEN ' "quoted" \\ é ✓' ELSE '' END,
       (i * 7919) %% 1000,
       timestamptz '2024-01-01 00:00:00+00'
           + (i / 200) * interval '37 seconds'
           + ((i / 200) %% 1000003) * interval '1 microsecond'
FROM generate_series(0::bigint, %(rows)s - 1) AS i
"""


class Command(BaseCommand):
    help = "Replaces demoapp_item's rows with ROWS deterministic ones (about 10,000 per user by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rows", type=int, default=1_000_000)
        parser.add_argument("--users", type=int, help="default: rows / 10,000, at least 1")
        parser.add_argument("--if-needed", action="store_true", help="keep the table if it holds ROWS rows already")

    def handle(self, *args: Any, rows: int, users: int | None, if_needed: bool, **options: Any) -> None:
        users = users or max(1, rows // 10_000)
        with connection.cursor() as cursor:
            if if_needed:
                cursor.execute("SELECT count(*), coalesce(max(id), 0) FROM demoapp_item")
                if cursor.fetchone() == (rows, rows):
                    return
            # Building the indexes once after the insert is about twice as fast as keeping
            # them up to date row by row.
            indexes = Item._meta.indexes
            with transaction.atomic(), connection.schema_editor() as schema:
                for index in indexes:
                    schema.remove_index(Item, index)
                cursor.execute("TRUNCATE demoapp_item")
                cursor.execute(SEED_SQL, {"rows": rows, "users": users})
                cursor.execute("SELECT setval(pg_get_serial_sequence('demoapp_item', 'id'), %s)", [max(rows, 1)])
                for index in indexes:
                    schema.add_index(Item, index)
            cursor.execute("ANALYZE demoapp_item")
        self.stdout.write(f"demoapp_item: {rows} rows for {users} users")
