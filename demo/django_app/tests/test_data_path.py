"""`/data/baseline` (pandas), `/data/inproc` (python polars) and `/data/offload` (the real
worker's Polars entries) answer the same request with the same status and the same bytes,
for the summary and the transform; a bad query is the same 400 on all three."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from demo_site import ring_sizes
from demoapp import tables
from molt_accel.arrow import table_to_ipc

SUMMARY_ENDPOINTS = ("/data/baseline", "/data/inproc", "/data/offload")
TRANSFORM_ENDPOINTS = tuple(f"{endpoint}/transform" for endpoint in SUMMARY_ENDPOINTS)
#: Bytes of a call frame besides its payload and entry name (docs/protocol.md).
FRAME_HEADER_LEN = 48


def answers(endpoints: tuple[str, ...], query: str) -> list[tuple[int, str, bytes]]:
    client = Client()
    replies = [client.get(endpoint, QUERY_STRING=query) for endpoint in endpoints]
    return [(reply.status_code, reply["Content-Type"], reply.content) for reply in replies]


def assert_same_answer(endpoints: tuple[str, ...], query: str) -> dict[str, object]:
    """The body all of `endpoints` answered `query` with (200 each, the same bytes)."""
    baseline, *others = answers(endpoints, query)
    assert baseline[0] == 200, (query, baseline)
    for endpoint, other in zip(endpoints[1:], others, strict=True):
        assert other == baseline, f"{endpoint}?{query}"
    return json.loads(baseline[2])


@pytest.mark.usefixtures("transport")
@pytest.mark.parametrize("min_quantity", [0, 1, 7, 19])
def test_the_summary_is_the_same_bytes_three_ways(min_quantity: int) -> None:
    summary = assert_same_answer(SUMMARY_ENDPOINTS, f"rows=10000&min_quantity={min_quantity}")
    assert summary["rows"] == 10_000
    groups = summary["groups"]
    assert [group["region"] for group in groups] == sorted(tables.REGIONS)
    assert summary["kept"] == sum(group["count"] for group in groups) > 0
    for group in groups:
        assert 1.0 <= group["price_mean"] <= group["price_p90"] <= 99.99


@pytest.mark.usefixtures("transport")
def test_the_summary_of_100k_rows_is_the_same_bytes_three_ways() -> None:
    assert assert_same_answer(SUMMARY_ENDPOINTS, "rows=100000&min_quantity=5")["rows"] == 100_000


@pytest.mark.usefixtures("transport")
def test_a_filter_that_keeps_nothing_is_an_empty_summary_three_ways() -> None:
    summary = assert_same_answer(SUMMARY_ENDPOINTS, "rows=10000&min_quantity=20")
    assert summary == {"rows": 10_000, "kept": 0, "groups": []}


@pytest.mark.usefixtures("transport")
@pytest.mark.parametrize(("min_quantity", "n"), [(0, 1), (4, 100), (15, 10_000)])
def test_the_transform_is_the_same_bytes_three_ways(min_quantity: int, n: int) -> None:
    top = assert_same_answer(TRANSFORM_ENDPOINTS, f"rows=10000&min_quantity={min_quantity}&n={n}")["top"]
    if n < 10_000:
        assert len(top) == n
    else:
        # Quantities of 15 to 19 are about a quarter of the rows, and products 40 to 49 drop
        # out of the join: all that is left is fewer than n.
        assert 0 < len(top) < n
    keys = [(-row["revenue"], row["id"]) for row in top]
    assert keys == sorted(keys)
    assert all(row["product_id"] < tables.LISTED_PRODUCTS and row["quantity"] >= min_quantity for row in top)


@pytest.mark.usefixtures("transport")
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("rows=5", "rows must be one of 10000, 100000, 1000000"),
        ("rows=", "rows must be one of 10000, 100000, 1000000"),
        ("rows=1e4", "rows must be one of 10000, 100000, 1000000"),
        ("rows=10000&min_quantity=-1", "min_quantity must be an integer between 0 and 1000000"),
        ("rows=10000&min_quantity=many", "min_quantity must be an integer between 0 and 1000000"),
    ],
)
def test_a_bad_query_is_the_same_400_three_ways(query: str, message: str) -> None:
    for endpoints in (SUMMARY_ENDPOINTS, TRANSFORM_ENDPOINTS):
        first, *others = answers(endpoints, query)
        assert first[0] == 400
        assert json.loads(first[2]) == {"error": {"code": "InvalidInput", "message": message}}
        assert others == [first, first]


@pytest.mark.usefixtures("transport")
@pytest.mark.parametrize("n", ["0", "10001", "ten"])
def test_a_bad_n_is_a_400_of_the_transform_only(n: str) -> None:
    first, *others = answers(TRANSFORM_ENDPOINTS, f"n={n}")
    assert first[0] == 400
    assert json.loads(first[2])["error"]["message"] == "n must be an integer between 1 and 10000"
    assert others == [first, first]
    # The summary takes no n: it ignores one, as other unknown parameters.
    assert assert_same_answer(SUMMARY_ENDPOINTS, f"n={n}")["rows"] == tables.ROWS_DEFAULT


def test_the_largest_table_fits_the_demos_frames_and_the_manifests_limits() -> None:
    payload = table_to_ipc(tables.sales_arrow(max(tables.ROWS_CHOICES)), params={"min_quantity": 0})
    assert FRAME_HEADER_LEN + len("table_summary") + len(payload) <= ring_sizes.MAX_FRAME_BYTES
    limits = json.loads(Path(settings.MOLT_EXPORTS).read_text())["settings"]["data"]
    assert len(payload) <= limits["max_bytes"]
    assert max(tables.ROWS_CHOICES) <= limits["max_rows"]


def test_a_summarys_floats_are_rounded_to_six_decimals() -> None:
    summary = tables.rendered_summary(
        {"rows": 2, "kept": 2, "groups": [{"region": "north", "count": 2, "quantity_sum": 3,
                                           "price_mean": 50.12345649999999, "price_p90": math.nan}]}
    )
    assert summary["groups"] == [
        {"region": "north", "count": 2, "quantity_sum": 3, "price_mean": 50.123456, "price_p90": None}
    ]
