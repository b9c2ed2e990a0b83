"""The benchmark's PostgreSQL part: requests for `/db/baseline`, `/db/offload` and `/db/entry`
(docs/demo-contract.md, "items_page"), the server's processes for the CPU columns, and the
cancellation check through to `pg_stat_activity`.

The database is the one `MOLT_PG_DSN` names (`make demo` starts a throwaway cluster and
`serve.py` seeds it with 1,000,000 items for users 1 to 100).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from procstat import descendants

DB_ENDPOINTS = ("/db/baseline", "/db/offload", "/db/entry")
SEEDED_USERS = 100
CANCEL_ROUNDS = 5
#: Only a lost cancel takes this long: the statement sleeps 10 s.
CANCEL_BOUND_S = 5.0


def db_url_params(rng: random.Random, limit: int, count: int) -> list[dict[str, Any]]:
    """`count` first pages of `limit` items for random users and status filters."""
    queries = []
    for _ in range(count):
        query: dict[str, Any] = {"user_id": rng.randint(1, SEEDED_USERS), "limit": limit}
        status = rng.choice(["all", "all", "open", "closed"])
        if status != "all":
            query["status"] = status
        queries.append(query)
    return queries


def postgres_pids() -> list[int]:
    """The cluster's postmaster and its backends (empty without a cluster)."""
    directory = os.environ.get("MOLT_PG_DIR")
    if not directory:
        return []
    try:
        postmaster = int((Path(directory) / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return descendants([postmaster])


def db_cancellation_check(worker_bin: Path, exports: Path) -> dict[str, Any] | None:
    """Calls `db_sleep(10)` through the test build of the worker, cancels each from asyncio
    once `pg_stat_activity` shows it running, and times until the backend is idle."""
    if not os.environ.get("MOLT_PG_DSN") or not worker_bin.exists():
        return None
    import psycopg
    from molt_accel import MoltClient

    def sleeping() -> int:
        with psycopg.connect(os.environ["MOLT_PG_DSN"], autocommit=True) as watcher:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                " AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
            ).fetchone()
        return int(row[0]) if row else 0

    def until(wanted: int) -> float | None:
        started = time.monotonic()
        while sleeping() != wanted:
            if time.monotonic() - started > CANCEL_BOUND_S:
                return None
            time.sleep(0.002)
        return time.monotonic() - started

    async def rounds(client: MoltClient) -> list[float | None]:
        idle_after: list[float | None] = []
        for _ in range(CANCEL_ROUNDS):
            call = asyncio.ensure_future(client.acall("db_sleep", {"seconds": 10}))
            await asyncio.to_thread(until, 1)
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
            idle_after.append(await asyncio.to_thread(until, 0))
        return idle_after

    with MoltClient(worker_cmd=[str(worker_bin)], exports=str(exports), transport="shm", timeout_ms=20_000) as client:
        idle_after = asyncio.run(rounds(client))
        next_call_ok = client.call("db_sleep", {"seconds": 0}) == 0
    cancelled = [seconds * 1000 for seconds in idle_after if seconds is not None]
    summary = (
        f"PostgreSQL: {len(cancelled)} of {CANCEL_ROUNDS} `pg_sleep(10)` calls cancelled from asyncio were "
        f"idle in `pg_stat_activity` within {CANCEL_BOUND_S:.0f} s"
    )
    if cancelled:
        summary += f" (median {statistics.median(cancelled):.1f} ms, max {max(cancelled):.1f} ms after the cancel)"
    summary += "; the next call on the pool " + ("worked." if next_call_ok else "FAILED.")
    return {"rounds": CANCEL_ROUNDS, "idle_after_ms": cancelled, "next_call_ok": next_call_ok, "summary": summary}
