"""`/baseline` (CPython) and the offloaded endpoints (the real `molt_worker`) answer every
request with the same status and byte-identical bodies: valid requests across the contract's
parameter space (cursors taken from a previous reply, small and large work sizes), and
invalid ones that break each rule, which get the same 400 and the same error body."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from django.test import AsyncClient, Client

from cases import (
    INVALID_COMPUTE,
    INVALID_LIST_ITEMS,
    compute_params,
    list_items_params,
    query_string,
)

LIST_ITEMS_REQUESTS = 300
COMPUTE_REQUESTS = 60


def list_items_queries(seed: int, count: int) -> list[str]:
    """`count` valid query strings; about a third continue the previous query's page with the
    cursor the baseline returned for it (fetched through the baseline view itself)."""
    rng = random.Random(seed)
    client = Client()
    queries: list[str] = []
    while len(queries) < count:
        params = list_items_params(rng)
        queries.append(query_string(params))
        if rng.random() < 0.35:
            reply = client.get("/baseline", QUERY_STRING=queries[-1])
            next_cursor = json.loads(reply.content)["next_cursor"]
            if next_cursor is not None:
                queries.append(query_string({**params, "cursor": next_cursor}))
    return queries


def assert_same_answer(path: str, query: str, baseline, offloaded) -> None:
    context = f"{path}?{query}"
    assert offloaded.status_code == baseline.status_code, context
    assert offloaded["Content-Type"] == baseline["Content-Type"], context
    assert offloaded.content == baseline.content, context


def test_generated_queries_cover_cursors_and_filters() -> None:
    queries = list_items_queries(seed=1, count=LIST_ITEMS_REQUESTS)
    assert sum("cursor=" in q for q in queries) >= 20
    assert sum("&q=" in q or q.startswith("q=") for q in queries) >= 50
    assert sum("rows=20000" in q for q in queries) >= 5


@pytest.mark.usefixtures("transport")
def test_offload_matches_baseline_byte_for_byte() -> None:
    client = Client()
    for query in list_items_queries(seed=1, count=LIST_ITEMS_REQUESTS):
        baseline = client.get("/baseline", QUERY_STRING=query)
        assert baseline.status_code == 200, query
        assert_same_answer("/offload", query, baseline, client.get("/offload", QUERY_STRING=query))


@pytest.mark.usefixtures("transport")
@pytest.mark.parametrize("query", INVALID_LIST_ITEMS)
def test_offload_rejects_invalid_query_like_baseline(query: str) -> None:
    client = Client()
    baseline = client.get("/baseline", QUERY_STRING=query)
    assert baseline.status_code == 400
    assert set(json.loads(baseline.content)["error"]) == {"code", "message"}
    assert_same_answer("/offload", query, baseline, client.get("/offload", QUERY_STRING=query))


@pytest.mark.usefixtures("transport")
def test_offload_async_matches_baseline_byte_for_byte() -> None:
    client = Client()
    queries = list_items_queries(seed=2, count=LIST_ITEMS_REQUESTS // 3) + INVALID_LIST_ITEMS
    baselines = [client.get("/baseline", QUERY_STRING=query) for query in queries]

    async def offload_all() -> list:
        async_client = AsyncClient()
        return [await async_client.get("/offload_async", QUERY_STRING=query) for query in queries]

    for query, baseline, offloaded in zip(queries, baselines, asyncio.run(offload_all()), strict=True):
        assert_same_answer("/offload_async", query, baseline, offloaded)


@pytest.mark.usefixtures("transport")
def test_offload_compute_matches_baseline_byte_for_byte() -> None:
    rng = random.Random(3)
    client = Client()
    for _ in range(COMPUTE_REQUESTS):
        query = query_string(compute_params(rng))
        baseline = client.get("/baseline/compute", QUERY_STRING=query)
        assert baseline.status_code == 200, query
        assert_same_answer("/offload/compute", query, baseline, client.get("/offload/compute", QUERY_STRING=query))


@pytest.mark.usefixtures("transport")
@pytest.mark.parametrize("query", INVALID_COMPUTE)
def test_offload_compute_rejects_invalid_query_like_baseline(query: str) -> None:
    client = Client()
    baseline = client.get("/baseline/compute", QUERY_STRING=query)
    assert baseline.status_code == 400
    assert_same_answer("/offload/compute", query, baseline, client.get("/offload/compute", QUERY_STRING=query))
