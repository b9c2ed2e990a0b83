"""The `/db/*` endpoints against the real PostgreSQL and the real worker: `/db/baseline` (the
ORM), `/db/offload` (the same querysets run by the worker) and `/db/entry` (the Rust entry on
molt-db) answer every request with the same status and the same bytes; a database that
refuses the app's login is a 503 with a safe message on each, and each recovers.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connections
from django.test import Client

from conftest import SEED_USERS

ENDPOINTS = ("/db/baseline", "/db/offload", "/db/entry")
PAGE_SIZES = (1, 50, 500, 5000)


def answers(client: Client, query: str) -> list[tuple[int, bytes]]:
    return [(reply.status_code, reply.content) for reply in (client.get(path, QUERY_STRING=query) for path in ENDPOINTS)]


def page_queries(seed: int, count: int) -> Iterator[str]:
    """Valid query strings over users, statuses and page sizes; every other one continues the
    page before it with the cursor the baseline returned."""
    rng = random.Random(seed)
    client = Client()
    for _ in range(count):
        params = {"user_id": str(rng.randint(1, SEED_USERS)), "limit": str(rng.choice(PAGE_SIZES))}
        status = rng.choice([None, "all", "open", "closed", "archived"])
        if status is not None:
            params["status"] = status
        query = "&".join(f"{key}={value}" for key, value in params.items())
        yield query
        reply = json.loads(client.get("/db/baseline", QUERY_STRING=query).content)
        if reply["next_cursor"] is not None:
            yield f"{query}&cursor={reply['next_cursor']}"


def test_the_three_endpoints_answer_the_same_bytes(transport: str) -> None:
    client = Client()
    pages = 0
    for query in page_queries(seed=12, count=30):
        baseline, offload, entry = answers(client, query)
        assert baseline[0] == 200, (query, baseline)
        assert offload == baseline, query
        assert entry == baseline, query
        pages += 1
    assert pages > 30, "some pages had a next page"


def test_a_page_of_5000_items_with_a_next_page() -> None:
    baseline, offload, entry = answers(Client(), "user_id=1&limit=5000")
    body = json.loads(baseline[1])
    assert len(body["items"]) == 5000 and body["next_cursor"] is not None
    assert sum(body["counts"].values()) == 6000
    assert offload == baseline and entry == baseline


def test_titles_that_need_escapes_and_timestamps_are_written_as_django_writes_them() -> None:
    baseline, offload, entry = answers(Client(), "user_id=1&limit=200")
    assert b'\\"quoted\\" \\\\ \\u00e9 \\u2713' in baseline[1]
    assert re.search(rb'"created_at": "2024-01-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"', baseline[1])
    assert offload == baseline and entry == baseline


@pytest.mark.parametrize(
    "query",
    [
        "",
        "user_id=0",
        "user_id=abc",
        "user_id=2147483648",
        "user_id=1&limit=0",
        "user_id=1&limit=5001",
        "user_id=1&status=deleted",
        "user_id=1&cursor=v1:01:5",
        "user_id=1&cursor=v1:1:0",
        "user_id=1&cursor=nonsense",
    ],
)
def test_invalid_requests_get_the_same_400(query: str) -> None:
    baseline, offload, entry = answers(Client(), query)
    assert baseline[0] == 400
    assert offload == baseline and entry == baseline


def test_an_unknown_user_has_an_empty_page_and_zero_counts() -> None:
    baseline, offload, entry = answers(Client(), "user_id=999")
    assert json.loads(baseline[1]) == {"items": [], "next_cursor": None, "counts": {"open": 0, "closed": 0, "archived": 0}}
    assert offload == baseline and entry == baseline


def test_a_database_that_refuses_the_login_is_a_503_without_details_and_each_endpoint_recovers(
    transport: str,
) -> None:
    client = Client()
    ok = answers(client, "user_id=2&limit=5")
    assert all(status == 200 for status, _ in ok)
    with pytest.MonkeyPatch.context() as patch:
        # The baseline's failure is logged with its traceback (for the operator): keep it
        # out of the test's output.
        patch.setattr("demoapp.views.logger.disabled", True, raising=False)
        refused = _with_login_refused(client)
    unavailable = json.dumps({"error": {"code": "Unavailable", "message": "the database is unavailable"}}).encode()
    for path, (status, body) in zip(ENDPOINTS, refused):
        assert (status, body) == (503, unavailable), path
    # Django reconnects on its next request, the worker's pool on its next call.
    for connection in connections.all():
        connection.close_if_unusable_or_obsolete()
    deadline = time.monotonic() + 10
    while (again := answers(client, "user_id=2&limit=5")) != ok and time.monotonic() < deadline:
        time.sleep(0.05)
    assert again == ok


def _with_login_refused(client: Client) -> list[tuple[int, bytes]]:
    dsn = os.environ["MOLT_PG_DSN"]
    superuser = psycopg.conninfo.make_conninfo(dsn, user="postgres")
    with psycopg.connect(superuser, autocommit=True) as admin:
        admin.execute("ALTER ROLE molt NOLOGIN")
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'molt'")
            for connection in connections.all():
                connection.close_if_unusable_or_obsolete()
            return answers(client, "user_id=2&limit=5")
        finally:
            admin.execute("ALTER ROLE molt LOGIN")
