"""molt_accel.arrow against the real worker over both transports: the data path's entries
(docs/demo-contract.md) answer what pandas computes, for tables from pyarrow, polars and
pandas; limits and corrupt streams are InvalidInput."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from molt_accel import InvalidInput, MoltClient
from molt_accel.arrow import acall_table, call_table, call_table_value, table_from_ipc, table_to_ipc
from molt_client_support import TEST_EXPORTS, MakeClient

# Rings and frames large enough for the tables below: 16 MiB rings carry 8 MiB frames.
BIG_RINGS = ("--ring-bytes", str(1 << 24))
# Debug builds of Polars are slow; a bound that only catches hangs.
TIMEOUT_MS = 10_000
KINDS = ["pyarrow", "polars", "pandas"]
TRANSFORM_COLUMNS = ["id", "region", "product_id", "category", "quantity", "price", "revenue"]


def sales(rows: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "region": pa.array(rng.choice(["north", "south", "east", "west"], rows)),
            "product_id": rng.integers(0, 50, rows, dtype=np.int64),
            "quantity": rng.integers(1, 20, rows, dtype=np.int64),
            # Prices in cents, so that revenues tie and the id breaks the ties.
            "price": rng.integers(100, 10_000, rows).astype(np.float64) / 100,
        }
    )


def products() -> pa.Table:
    # Products 40 to 49 are missing: their sales drop out of the inner join.
    return pa.table({"product_id": np.arange(40, dtype=np.int64), "category": [f"c{i % 5}" for i in range(40)]})


def as_kind(table: pa.Table, kind: str) -> Any:
    if kind == "polars":
        return pl.from_arrow(table)
    if kind == "pandas":
        return table.to_pandas()
    return table


def pandas_summary(table: pa.Table, min_quantity: int) -> dict[str, Any]:
    df = table.to_pandas()
    kept = df[df.quantity >= min_quantity]
    groups = [
        {
            "region": region,
            "count": len(group),
            "quantity_sum": int(group.quantity.sum()),
            "price_mean": float(group.price.mean()),
            "price_p90": float(group.price.quantile(0.9)),
        }
        for region, group in kept.groupby("region", sort=True)
    ]
    return {"rows": len(df), "kept": len(kept), "groups": groups}


def pandas_transform(table: pa.Table, dimension: pa.Table, min_quantity: int, n: int) -> pd.DataFrame:
    df = table.to_pandas()
    joined = df[df.quantity >= min_quantity].merge(dimension.to_pandas(), on="product_id", how="inner")
    joined["revenue"] = joined.quantity.astype(np.float64) * joined.price
    top = joined.sort_values(["revenue", "id"], ascending=[False, True]).head(n)
    return top[TRANSFORM_COLUMNS].reset_index(drop=True)


def assert_summaries_equal(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert (got["rows"], got["kept"]) == (expected["rows"], expected["kept"])
    assert [g["region"] for g in got["groups"]] == [g["region"] for g in expected["groups"]]
    for mine, theirs in zip(got["groups"], expected["groups"]):
        assert (mine["count"], mine["quantity_sum"]) == (theirs["count"], theirs["quantity_sum"])
        # Sums in another order: equal to the last bits only.
        assert math.isclose(mine["price_mean"], theirs["price_mean"], rel_tol=1e-12)
        assert math.isclose(mine["price_p90"], theirs["price_p90"], rel_tol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_summary_of_10k_rows_equals_pandas(make_client: MakeClient, kind: str) -> None:
    table = sales(10_000)
    client = make_client(worker_args=BIG_RINGS, timeout_ms=TIMEOUT_MS)
    got = call_table_value(client, "table_summary", as_kind(table, kind), params={"min_quantity": 5})
    assert_summaries_equal(got, pandas_summary(table, 5))


@pytest.mark.parametrize("kind", KINDS)
def test_transform_of_10k_rows_equals_pandas(make_client: MakeClient, kind: str) -> None:
    table = sales(10_000)
    client = make_client(worker_args=BIG_RINGS, timeout_ms=TIMEOUT_MS)
    got = call_table(
        client, "table_transform", [as_kind(table, kind), as_kind(products(), kind)],
        params={"min_quantity": 3, "n": 500}, output="pandas",
    )
    expected = pandas_transform(table, products(), 3, 500)
    assert len(got) == 500
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


@pytest.mark.parametrize("output", KINDS)
def test_a_table_reply_comes_back_as_asked(make_client: MakeClient, output: str) -> None:
    client = make_client(timeout_ms=TIMEOUT_MS)
    got = call_table(client, "table_transform", [sales(50), products()], params={"n": 3}, output=output)  # type: ignore[arg-type]
    expected_type = {"pyarrow": pa.Table, "polars": pl.DataFrame, "pandas": pd.DataFrame}[output]
    assert isinstance(got, expected_type)
    assert len(got) == 3


def test_acall_table_answers_the_same(make_client: MakeClient) -> None:
    table = sales(2_000)
    client = make_client(timeout_ms=TIMEOUT_MS)

    async def both() -> tuple[pa.Table, pa.Table]:
        params = {"min_quantity": 10, "n": 20}
        first = await acall_table(client, "table_transform", [table, products()], params=params)
        second = await acall_table(client, "table_transform", [table, products()], params=params)
        return first, second

    first, second = asyncio.run(both())
    assert first.equals(second)
    pd.testing.assert_frame_equal(
        first.to_pandas(), pandas_transform(table, products(), 10, 20), check_dtype=False
    )


def test_an_empty_selection_is_an_empty_summary(make_client: MakeClient) -> None:
    got = call_table_value(make_client(timeout_ms=TIMEOUT_MS), "table_summary", sales(100), params={"min_quantity": 1_000})
    assert got == {"rows": 100, "kept": 0, "groups": []}


def test_a_missing_column_is_invalid_input(make_client: MakeClient) -> None:
    with pytest.raises(InvalidInput, match='sales has no column "price"'):
        call_table_value(make_client(timeout_ms=TIMEOUT_MS), "table_summary", sales(10).drop_columns(["price"]))


def test_a_column_of_the_wrong_type_is_invalid_input(make_client: MakeClient) -> None:
    table = sales(10)
    table = table.set_column(3, "quantity", table.column("quantity").cast(pa.float64()))
    with pytest.raises(InvalidInput, match='column "quantity" must be int64'):
        call_table_value(make_client(timeout_ms=TIMEOUT_MS), "table_summary", table)


def test_unknown_params_are_invalid_input(make_client: MakeClient) -> None:
    with pytest.raises(InvalidInput, match="unknown field"):
        call_table_value(make_client(timeout_ms=TIMEOUT_MS), "table_summary", sales(10), params={"min_qty": 1})


def test_the_wrong_number_of_tables_is_invalid_input(make_client: MakeClient) -> None:
    with pytest.raises(InvalidInput, match="table_transform takes 2 table"):
        call_table(make_client(timeout_ms=TIMEOUT_MS), "table_transform", sales(10), params={"n": 1})


def test_garbage_and_truncated_streams_are_invalid_input(make_client: MakeClient) -> None:
    client = make_client(timeout_ms=TIMEOUT_MS)
    stream = table_to_ipc(sales(100))
    for payload in [b"", b"not arrow at all", stream[: len(stream) // 2], stream[:-8], stream[:8] + b"\x00" * 64]:
        with pytest.raises(InvalidInput, match="table_summary"):
            client.call("table_summary", payload, codec="raw")
    # The worker is unharmed: the whole stream still works.
    assert call_table_value(client, "table_summary", sales(100))["rows"] == 100


@pytest.fixture
def small_limits(tmp_path: Path) -> Path:
    manifest = json.loads(TEST_EXPORTS.read_text())
    manifest["settings"]["data"] = {"max_bytes": 200_000, "max_rows": 1_000, "max_columns": 8}
    path = tmp_path / "small_limits.json"
    path.write_text(json.dumps(manifest))
    return path


def test_limits_from_the_manifest_are_named(make_client: MakeClient, small_limits: Path) -> None:
    client = make_client(exports=str(small_limits), timeout_ms=TIMEOUT_MS)
    assert call_table_value(client, "table_summary", sales(1_000))["rows"] == 1_000
    with pytest.raises(InvalidInput, match=r"table 1 has more than 1000 rows, the max_rows limit of settings\.data"):
        call_table_value(client, "table_summary", sales(1_001))
    with pytest.raises(InvalidInput, match=r"over the max_bytes limit \(200000\) of settings\.data"):
        call_table(client, "table_transform", [sales(1_000), pa.table({"pad": np.zeros(30_000)}), products()])
    wide = pa.table({f"c{i}": [1] for i in range(9)})
    with pytest.raises(InvalidInput, match=r"table 1 has 9 columns, over the max_columns limit \(8\)"):
        call_table_value(client, "table_summary", wide)


def test_a_table_reply_that_is_not_arrow_is_a_protocol_error() -> None:
    from molt_accel import ProtocolError

    with pytest.raises(ProtocolError):
        table_from_ipc(b"\x01\x02\x03")


def test_params_that_are_not_json_are_refused_before_sending() -> None:
    with pytest.raises(InvalidInput, match="JSON"):
        table_to_ipc(sales(1), params={"x": object()})


def test_something_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not dict"):
        table_to_ipc({"x": [1]})


def test_a_64mb_table_goes_through(transport: str) -> None:
    # 1.6 million rows: about 64 MB of Arrow, under the shipped 64 MiB max_bytes. Rings of
    # 256 MiB carry frames up to 128 MiB; the frame limit is raised on both sides to 80 MiB.
    table = sales(1_600_000)
    payload = table_to_ipc(table)
    assert 60_000_000 < len(payload) <= 64 << 20
    frame_limit = 80 << 20
    worker_args = ("--ring-bytes", str(1 << 28), "--max-frame-bytes", str(frame_limit))
    from molt_client_support import worker_cmd

    with MoltClient(
        transport=transport, worker_cmd=worker_cmd(*worker_args), exports=str(TEST_EXPORTS),  # type: ignore[arg-type]
        max_frame_bytes=frame_limit, timeout_ms=60_000,
    ) as client:
        got = call_table_value(client, "table_summary", table, params={"min_quantity": 5}, timeout_ms=60_000)
        assert_summaries_equal(got, pandas_summary(table, 5))
        bigger = table_to_ipc(sales(1_700_000))
        assert (64 << 20) < len(bigger) < frame_limit
        with pytest.raises(InvalidInput, match="max_bytes limit"):
            client.call("table_summary", bigger, codec="raw", timeout_ms=60_000)


def test_a_table_over_the_frame_limit_is_refused_before_sending(make_client: MakeClient) -> None:
    client = make_client(max_frame_bytes=64 * 1024, timeout_ms=TIMEOUT_MS)
    with pytest.raises(InvalidInput, match=r"over max_frame_bytes \(65536\)"):
        call_table_value(client, "table_summary", sales(10_000))
    # Nothing was sent: the connection is as it was.
    assert call_table_value(client, "table_summary", sales(100))["rows"] == 100
