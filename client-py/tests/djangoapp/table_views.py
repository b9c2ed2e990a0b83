"""Views that send tables with ``@molt_offload(table=...)`` to the test worker's data-path
entries (docs/demo-contract.md), and one that renders a plain call's result."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from django.http import HttpRequest, HttpResponse, JsonResponse

from molt_accel.arrow import Tables
from molt_accel.django import molt_offload


def sales(rows: int) -> pa.Table:
    """``rows`` sales: two regions, quantities 1 to 10, prices 1.00 to 2.00."""
    ids = np.arange(rows, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "region": pa.array(np.where(ids % 2 == 0, "north", "south")),
            "product_id": ids % 3,
            "quantity": ids % 10 + 1,
            "price": 1.0 + (ids % 101) / 100,
        }
    )


def products() -> pa.Table:
    return pa.table({"product_id": np.arange(3, dtype=np.int64), "category": ["a", "b", "c"]})


def rows_of(request: HttpRequest) -> int:
    return int(request.GET.get("rows", "100"))


def summary_call(request: HttpRequest) -> Any:
    if "rows" not in request.GET:
        return JsonResponse({"error": {"code": "InvalidInput", "message": "rows is required"}}, status=400)
    return Tables(sales(rows_of(request)), params={"min_quantity": int(request.GET.get("min_quantity", "0"))})


@molt_offload(entry="table_summary", table="value")
def summary(request: HttpRequest) -> Any:
    return summary_call(request)


@molt_offload(entry="table_summary", table="value")
async def summary_async(request: HttpRequest) -> Any:
    return summary_call(request)


def price_means(summary: dict[str, Any]) -> dict[str, float]:
    return {group["region"]: round(group["price_mean"], 2) for group in summary["groups"]}


@molt_offload(entry="table_summary", table="value", render=price_means)
def summary_rendered(request: HttpRequest) -> Any:
    return summary_call(request)


@molt_offload(entry="table_summary", table="value")
def summary_without_params(request: HttpRequest) -> Any:
    """One table, no parameters: no ``Tables`` needed."""
    return sales(rows_of(request))


@molt_offload(entry="table_summary", table="value")
def summary_of_a_dict(request: HttpRequest) -> Any:
    return {"id": [1, 2]}


@molt_offload(entry="table_summary", table="value")
def summary_missing_a_column(request: HttpRequest) -> Any:
    return sales(10).drop_columns(["price"])


def transform_call(request: HttpRequest) -> Tables:
    return Tables(sales(rows_of(request)), products(), params={"n": int(request.GET.get("n", "5"))})


@molt_offload(entry="table_transform", table="table")
def transform(request: HttpRequest) -> Any:
    return transform_call(request)


@molt_offload(entry="table_transform", table="table")
async def transform_async(request: HttpRequest) -> Any:
    return transform_call(request)


def top_ids(top: pa.Table) -> dict[str, list[int]]:
    return {"ids": top.column("id").to_pylist()}


@molt_offload(entry="table_transform", table="table", render=top_ids)
async def transform_rendered_async(request: HttpRequest) -> Any:
    return transform_call(request)


@molt_offload(entry="table_transform", table="value")
def transform_read_as_a_value(request: HttpRequest) -> Any:
    """A table entry behind ``table="value"``: its Arrow reply is not MsgPack."""
    return transform_call(request)


def teapot(result: Any) -> HttpResponse:
    return HttpResponse(repr(sorted(result)), status=418, content_type="text/plain")


@molt_offload(entry="echo", render=teapot)
def echo_rendered(request: HttpRequest) -> dict[str, str]:
    return dict(request.GET.items())
