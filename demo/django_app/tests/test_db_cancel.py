"""Cancellation down to the server and a bounded pool, through the real worker and the real
PostgreSQL: a call running `pg_sleep(10)` that Python cancels is cancelled on the server and
its connection serves the next call; a call that finds no free connection in time is Busy."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import psycopg
import pytest
from molt_accel import Busy, MoltClient

from conftest import REPO_ROOT

#: The pool of the test manifest (settings.database.pool_size) and its acquire bound.
POOL_SIZE = 8
#: Generous: only a lost cancel or a hung server takes this long (the statement sleeps 10 s).
CANCEL_BOUND_S = 3.0


@pytest.fixture(params=["stdio", "shm"])
def client(request: pytest.FixtureRequest) -> Iterator[MoltClient]:
    with MoltClient(
        worker_cmd=[os.environ["MOLT_WORKER_BIN"]],
        exports=str(REPO_ROOT / "molt_exports.test.json"),
        transport=request.param,
        strict_shm=True,
        timeout_ms=20_000,
    ) as molt:
        yield molt


def sleeping_backends() -> int:
    """The worker's backends running pg_sleep now (pg_stat_activity, as the app's role)."""
    with psycopg.connect(os.environ["MOLT_PG_DSN"], autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep%'"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def wait_for(predicate: object, bound_s: float) -> float:
    """Seconds until `predicate()` held; fails past `bound_s`."""
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - started > bound_s:
            pytest.fail(f"not within {bound_s} s")
        time.sleep(0.005)
    return time.monotonic() - started


def test_a_call_cancelled_from_python_cancels_its_statement_on_the_server(client: MoltClient) -> None:
    async def cancelled_call() -> float:
        call = asyncio.ensure_future(client.acall("db_sleep", {"seconds": 10}))
        await asyncio.to_thread(wait_for, lambda: sleeping_backends() == 1, CANCEL_BOUND_S)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return await asyncio.to_thread(wait_for, lambda: sleeping_backends() == 0, CANCEL_BOUND_S)

    idle_after_s = asyncio.run(cancelled_call())
    print(f"backend idle {idle_after_s * 1000:.1f} ms after the cancel")
    # The pool goes on: the next call gets a clean connection.
    assert client.call("db_sleep", {"seconds": 0}) == 0


def test_a_call_past_its_deadline_cancels_its_statement_on_the_server(client: MoltClient) -> None:
    from molt_accel import Timeout

    with pytest.raises(Timeout):
        client.call("db_sleep", {"seconds": 10}, timeout_ms=300)
    wait_for(lambda: sleeping_backends() == 0, CANCEL_BOUND_S)
    assert client.call("db_sleep", {"seconds": 0}) == 0


def test_a_call_that_finds_no_free_connection_in_time_is_busy(client: MoltClient) -> None:
    async def one_more_than_the_pool() -> list[object]:
        holders = [asyncio.ensure_future(client.acall("db_sleep", {"seconds": 1.5})) for _ in range(POOL_SIZE)]
        await asyncio.to_thread(wait_for, lambda: sleeping_backends() == POOL_SIZE, CANCEL_BOUND_S)
        extra = await asyncio.gather(client.acall("db_sleep", {"seconds": 0}), return_exceptions=True)
        return [*extra, *await asyncio.gather(*holders, return_exceptions=True)]

    extra, *held = asyncio.run(one_more_than_the_pool())
    assert isinstance(extra, Busy), extra
    assert held == [1.5] * POOL_SIZE
    assert client.call("db_sleep", {"seconds": 0}) == 0


def test_the_manifests_hold_the_querysets_the_app_registers() -> None:
    from django.core.management import call_command

    manifests = [REPO_ROOT / "molt_exports.json", REPO_ROOT / "molt_exports.test.json"]
    call_command("molt_queries", *[f"--manifest={path}" for path in manifests], "--check")
