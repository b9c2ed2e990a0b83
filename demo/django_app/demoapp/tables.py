"""The data path's demo: the `table_summary` and `table_transform` contracts
(docs/demo-contract.md, "The data path") on one `sales` table, computed three ways:

- pandas in the Django process (`/data/baseline`), as a Django team writes it today;
- python polars in the Django process (`/data/inproc`), the strong in-process peer;
- the worker's Polars entries through `@molt_offload(table=...)` (`/data/offload`).

The query string (`rows`, `min_quantity`, and `n` for the transform) is read by
:func:`parse_query` for all three, so a bad parameter is the same 400 everywhere. The body
is rendered by :func:`rendered_summary` and :func:`rendered_transform` for all three, so the
same answer is the same bytes.

Each Django process builds each table once, deterministically (numpy's generator with a
fixed seed), in the representation its endpoint uses, and keeps it: a request measures the
computation and the transfer, not the table's generation. numpy, pandas, polars and pyarrow
are imported by the functions that use them, so a Django process that never serves
`/data/*` does not load them: they would add to the RSS of every process, the other
endpoints' benchmark figures included (some 150 MiB together).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.http import QueryDict

from .contract import ContractError
from .query import payload_from_query

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import polars as pl
    import pyarrow as pa
    from molt_accel.arrow import Tables

__all__ = [
    "DataQuery",
    "ROWS_CHOICES",
    "parse_query",
    "rendered_summary",
    "rendered_transform",
    "sales_arrow",
    "products_arrow",
    "summary_pandas",
    "summary_polars",
    "summary_call",
    "transform_pandas",
    "transform_polars",
    "transform_call",
]

#: The sizes of `sales` the endpoints serve (each process builds the ones it is asked for).
ROWS_CHOICES = (10_000, 100_000, 1_000_000)
ROWS_DEFAULT = 10_000
#: Quantities are 1 to 19; anything up to this bound is a valid (maybe empty) filter.
MIN_QUANTITY_MAX = 1_000_000
#: The contract's bound on `table_transform`'s `n`.
N_MAX = 10_000
N_DEFAULT = 100
#: Decimals kept of the summary's floats (see :func:`rendered_summary`).
FLOAT_DECIMALS = 6
SEED = 20240101
REGIONS = ("north", "south", "east", "west")
#: Products 0 to 49 are sold; the dimension table has 0 to 39, so the transform's inner
#: join drops a fifth of the rows.
SOLD_PRODUCTS = 50
LISTED_PRODUCTS = 40
CATEGORIES = 5
TRANSFORM_COLUMNS = ("id", "region", "product_id", "category", "quantity", "price", "revenue")


@dataclass(frozen=True)
class DataQuery:
    """A valid `/data/*` query."""

    rows: int
    min_quantity: int
    #: Rows the transform answers; the summary takes none (and ignores an `n` it is given).
    n: int | None


def _int_in_range(fields: Mapping[str, Any], name: str, low: int, high: int, default: int) -> int:
    value = fields.get(name, default)
    if type(value) is not int or not low <= value <= high:
        raise ContractError(name, f"{name} must be an integer between {low} and {high}")
    return value


def parse_query(query: QueryDict | Mapping[str, str], *, transform: bool = False) -> DataQuery:
    """The query of a `/data/*` request (with `n` for a transform); `ContractError` naming
    the parameter if invalid. Other parameters are ignored, as by `query.py`."""
    fields = payload_from_query(query, ("rows", "min_quantity", "n"))
    rows = fields.get("rows", ROWS_DEFAULT)
    if type(rows) is not int or rows not in ROWS_CHOICES:
        choices = ", ".join(str(choice) for choice in ROWS_CHOICES)
        raise ContractError("rows", f"rows must be one of {choices}")
    return DataQuery(
        rows=rows,
        min_quantity=_int_in_range(fields, "min_quantity", 0, MIN_QUANTITY_MAX, 0),
        n=_int_in_range(fields, "n", 1, N_MAX, N_DEFAULT) if transform else None,
    )


# -- the tables -------------------------------------------------------------------------


def _sales_columns(rows: int) -> dict[str, np.ndarray]:
    """The columns of `sales` (docs/demo-contract.md) with `rows` rows, the same for a seed:
    prices in whole cents, so that revenues tie and the id decides the transform's order."""
    import numpy as np

    generator = np.random.default_rng(SEED)
    return {
        "id": np.arange(rows, dtype=np.int64),
        "region": generator.choice(np.array(REGIONS), rows),
        "product_id": generator.integers(0, SOLD_PRODUCTS, rows, dtype=np.int64),
        "quantity": generator.integers(1, 20, rows, dtype=np.int64),
        "price": generator.integers(100, 10_000, rows).astype(np.float64) / 100,
    }


def _products_columns() -> dict[str, Any]:
    import numpy as np

    return {
        "product_id": np.arange(LISTED_PRODUCTS, dtype=np.int64),
        "category": [f"c{product % CATEGORIES}" for product in range(LISTED_PRODUCTS)],
    }


@functools.cache
def sales_arrow(rows: int) -> pa.Table:
    """`sales` as the pyarrow Table `/data/offload` sends."""
    import pyarrow as pa

    return pa.table(_sales_columns(rows))


@functools.cache
def products_arrow() -> pa.Table:
    import pyarrow as pa

    return pa.table(_products_columns())


@functools.cache
def _sales_pandas(rows: int) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(_sales_columns(rows))


@functools.cache
def _products_pandas() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(_products_columns())


@functools.cache
def _sales_polars(rows: int) -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(_sales_columns(rows))


@functools.cache
def _products_polars() -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(_products_columns())


# -- pandas (/data/baseline) --------------------------------------------------------------


def summary_pandas(query: DataQuery) -> dict[str, Any]:
    """`table_summary` with pandas."""
    sales = _sales_pandas(query.rows)
    kept = sales[sales["quantity"] >= query.min_quantity]
    # dropna=False: the contract keeps a null region, as a last group.
    grouped = kept.groupby("region", sort=True, dropna=False)
    stats = grouped.agg(
        count=("quantity", "size"), quantity_sum=("quantity", "sum"), price_mean=("price", "mean")
    )
    stats["price_p90"] = grouped["price"].quantile(0.9)
    return rendered_summary(
        {"rows": len(sales), "kept": len(kept), "groups": stats.reset_index().to_dict("records")}
    )


def transform_pandas(query: DataQuery) -> dict[str, Any]:
    """`table_transform` with pandas."""
    sales = _sales_pandas(query.rows)
    kept = sales[sales["quantity"] >= query.min_quantity]
    joined = kept.merge(_products_pandas(), on="product_id", how="inner")
    joined["revenue"] = joined["quantity"].astype("float64") * joined["price"]
    top = joined.sort_values(["revenue", "id"], ascending=[False, True]).head(query.n)
    return rendered_transform(top[list(TRANSFORM_COLUMNS)].to_dict("records"))


# -- python polars (/data/inproc) -----------------------------------------------------------


def summary_polars(query: DataQuery) -> dict[str, Any]:
    """`table_summary` with python polars' lazy engine, in this process."""
    import polars as pl

    sales = _sales_polars(query.rows)
    groups = (
        sales.lazy()
        .filter(pl.col("quantity") >= query.min_quantity)
        .group_by("region")
        .agg(
            pl.len().alias("count"),
            pl.col("quantity").sum().alias("quantity_sum"),
            pl.col("price").mean().alias("price_mean"),
            pl.col("price").quantile(0.9, interpolation="linear").alias("price_p90"),
        )
        .sort("region", nulls_last=True)
        .collect()
    )
    return rendered_summary(
        {"rows": sales.height, "kept": int(groups["count"].sum()), "groups": groups.to_dicts()}
    )


def transform_polars(query: DataQuery) -> dict[str, Any]:
    """`table_transform` with python polars' lazy engine, in this process."""
    import polars as pl

    top = (
        _sales_polars(query.rows)
        .lazy()
        .filter(pl.col("quantity") >= query.min_quantity)
        .join(_products_polars().lazy(), on="product_id", how="inner")
        .with_columns((pl.col("quantity").cast(pl.Float64) * pl.col("price")).alias("revenue"))
        .sort(["revenue", "id"], descending=[True, False])
        .head(query.n)
        .select(TRANSFORM_COLUMNS)
        .collect()
    )
    return rendered_transform(top.to_dicts())


# -- the worker (/data/offload) --------------------------------------------------------------


def summary_call(query: DataQuery) -> Tables:
    """What `/data/offload` sends `table_summary`: `sales` and the query's parameters."""
    from molt_accel.arrow import Tables

    return Tables(sales_arrow(query.rows), params={"min_quantity": query.min_quantity})


def transform_call(query: DataQuery) -> Tables:
    """What `/data/offload/transform` sends `table_transform`: `sales`, then `products`."""
    from molt_accel.arrow import Tables

    return Tables(
        sales_arrow(query.rows), products_arrow(), params={"min_quantity": query.min_quantity, "n": query.n}
    )


# -- one rendering for the three ------------------------------------------------------------


def _region(value: Any) -> str | None:
    # pandas names the null group NaN; polars and the worker, None.
    return value if isinstance(value, str) else None


def _decimal(value: Any) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(float(value), FLOAT_DECIMALS)


def rendered_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of a summary, whichever engine computed it: the contract's keys in its
    order, counts and sums as ints, and `price_mean` and `price_p90` rounded to 6 decimals.
    The engines add the prices up in different orders (the worker's Polars against pandas and
    python polars, which agree), so a mean differs from one engine to the other by about
    1e-14 of its value, not to the last bit; 6 decimals of a price keep every digit that
    means something, and the same bytes on every path."""
    return {
        "rows": int(summary["rows"]),
        "kept": int(summary["kept"]),
        "groups": [
            {
                "region": _region(group["region"]),
                "count": int(group["count"]),
                "quantity_sum": int(group["quantity_sum"]),
                "price_mean": _decimal(group["price_mean"]),
                "price_p90": _decimal(group["price_p90"]),
            }
            for group in summary["groups"]
        ],
    }


def rendered_transform(top: list[dict[str, Any]] | pa.Table) -> dict[str, Any]:
    """The JSON body of a transform, whichever engine computed it: `{"top": [row, ...]}`,
    each row the contract's columns in order, as Python ints, strings and floats. Not
    rounded: `revenue` is one multiplication of the same two doubles in every engine, so it
    is the same double. The worker's answer (a pyarrow Table of at most `N_MAX` rows) is
    turned into rows by pyarrow."""
    rows = top if isinstance(top, list) else top.to_pylist()
    return {
        "top": [
            {
                "id": int(row["id"]),
                "region": _region(row["region"]),
                "product_id": int(row["product_id"]),
                "category": row["category"],
                "quantity": int(row["quantity"]),
                "price": float(row["price"]),
                "revenue": float(row["revenue"]),
            }
            for row in rows
        ]
    }
