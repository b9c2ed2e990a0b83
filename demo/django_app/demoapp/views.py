"""The demo endpoints: the same two contract entries, computed in CPython or by the worker.

`/baseline` and `/baseline/compute` run `contract.py` in this process. `/offload`,
`/offload_async` and `/offload/compute` send the same payload to `molt_worker` through
`@molt_offload(passthrough=True)`: the worker writes its result as the JSON `JsonResponse`
would and the decorator answers those bytes as they are (no decoding, no re-encoding), or the
mapped error status and `{"error": {"code", "message"}}`. A contract violation gives the same
400 and the same body on both paths: the worker's InvalidInput message is the contract's
`ContractError` message, and the baseline renders it with the decorator's own
`error_response`.

`/data/baseline`, `/data/inproc` and `/data/offload` (and their `/transform` twins) are the
data path's: one table summarised by pandas or python polars in this process, or sent to the
worker's Polars entries with `@molt_offload(table=...)`; `tables.py` reads their queries and
renders their bodies, the same for the three.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from molt_accel import InvalidInput, MoltError, Unavailable
from molt_accel.django import error_response, molt_offload

from . import contract, items, molt_queries, tables
from .query import compute_payload, list_items_payload

logger = logging.getLogger(__name__)


def invalid_input_response(error: contract.ContractError) -> JsonResponse:
    """What the offloaded path answers when the worker replies InvalidInput."""
    return error_response(InvalidInput(error.message))


def baseline(request: HttpRequest) -> JsonResponse:
    """`list_items` computed in CPython."""
    try:
        return JsonResponse(contract.list_items(list_items_payload(request.GET)))
    except contract.ContractError as error:
        return invalid_input_response(error)


@molt_offload(entry="list_items", passthrough=True)
def offload(request: HttpRequest) -> dict[str, Any]:
    """`list_items` computed by the worker (sync view, served by gunicorn)."""
    return list_items_payload(request.GET)


@molt_offload(entry="list_items", passthrough=True)
async def offload_async(request: HttpRequest) -> dict[str, Any]:
    """`list_items` computed by the worker from an async view (served by uvicorn); a client
    that goes away cancels the call in the worker."""
    return list_items_payload(request.GET)


def baseline_compute(request: HttpRequest) -> JsonResponse:
    """`compute` in CPython."""
    try:
        return JsonResponse(contract.compute(compute_payload(request.GET)))
    except contract.ContractError as error:
        return invalid_input_response(error)


@molt_offload(entry="compute", passthrough=True)
def offload_compute(request: HttpRequest) -> dict[str, Any]:
    """`compute` by the worker."""
    return compute_payload(request.GET)


@molt_offload(entry="health")
def healthz(request: HttpRequest) -> dict[str, Any]:
    """Ready when this Django process can reach its worker: the worker's `health` answer
    (status, version, uptime), or the decorator's 503 when the worker is unavailable."""
    return {}


# `/db/*`: a page of items from PostgreSQL with the per-status counts (`items.py`), the same
# bytes three ways. A database that is down is the worker's Unavailable on every path: 503,
# Retry-After, and a message that names nothing of the server.


def _database_unavailable() -> JsonResponse:
    return error_response(Unavailable("the database is unavailable"))


def db_baseline(request: HttpRequest) -> JsonResponse:
    """The page with the ORM over psycopg, as a Django team writes it today."""
    try:
        page = items.parse_page_request(items.page_payload(request.GET))
    except contract.ContractError as error:
        return invalid_input_response(error)
    try:
        rows = list(items.page_queryset(page.user_id, page.status, page.limit, page.after))
        counts = list(items.counts_queryset(page.user_id))
    except DatabaseError:
        logger.warning("db_baseline: the database is unavailable", exc_info=True)
        return _database_unavailable()
    return JsonResponse(items.page_body(page, rows, counts))


def db_offload(request: HttpRequest) -> JsonResponse:
    """The same querysets, run by the worker through the queryset adapter."""
    try:
        page = items.parse_page_request(items.page_payload(request.GET))
    except contract.ContractError as error:
        return invalid_input_response(error)
    try:
        rows = molt_queries.items_page.rows(page.user_id, page.status, page.limit, page.after)
        counts = molt_queries.items_counts.rows(page.user_id)
    except MoltError as error:
        return error_response(error)
    return JsonResponse(items.page_body(page, rows, counts))


@molt_offload(entry="items_page", passthrough=True)
def db_entry(request: HttpRequest) -> dict[str, Any]:
    """The worker's `items_page` entry on molt-db; its JSON bytes are the response body."""
    return items.page_payload(request.GET)


# `/data/*`: the data path's summary and transform of one `sales` table (`tables.py`), the
# same bytes three ways: pandas and python polars in this process, Polars in the worker.

#: The table entries' default_timeout_ms in the shipped manifest: a 1,000,000-row table
#: takes a debug build of the worker seconds.
DATA_TIMEOUT_MS = 10_000


def _data_query(request: HttpRequest, *, transform: bool = False) -> tables.DataQuery | JsonResponse:
    try:
        return tables.parse_query(request.GET, transform=transform)
    except contract.ContractError as error:
        return invalid_input_response(error)


def data_baseline(request: HttpRequest) -> JsonResponse:
    """The summary with pandas, as a Django team writes it today."""
    query = _data_query(request)
    if isinstance(query, JsonResponse):
        return query
    return JsonResponse(tables.summary_pandas(query))


def data_inproc(request: HttpRequest) -> JsonResponse:
    """The summary with python polars in this process."""
    query = _data_query(request)
    if isinstance(query, JsonResponse):
        return query
    return JsonResponse(tables.summary_polars(query))


@molt_offload(entry="table_summary", table="value", render=tables.rendered_summary, timeout_ms=DATA_TIMEOUT_MS)
def data_offload(request: HttpRequest) -> Any:
    """The summary by the worker: the table goes as an Arrow IPC stream, the summary comes
    back as MsgPack and is rendered like the others."""
    query = _data_query(request)
    if isinstance(query, JsonResponse):
        return query
    return tables.summary_call(query)


def data_baseline_transform(request: HttpRequest) -> JsonResponse:
    """The transform (filter, join, sort, top n) with pandas."""
    query = _data_query(request, transform=True)
    if isinstance(query, JsonResponse):
        return query
    return JsonResponse(tables.transform_pandas(query))


def data_inproc_transform(request: HttpRequest) -> JsonResponse:
    """The transform with python polars in this process."""
    query = _data_query(request, transform=True)
    if isinstance(query, JsonResponse):
        return query
    return JsonResponse(tables.transform_polars(query))


@molt_offload(
    entry="table_transform", table="table", render=tables.rendered_transform, timeout_ms=DATA_TIMEOUT_MS
)
def data_offload_transform(request: HttpRequest) -> Any:
    """The transform by the worker: both tables go as Arrow IPC streams, the top rows come
    back as one."""
    query = _data_query(request, transform=True)
    if isinstance(query, JsonResponse):
        return query
    return tables.transform_call(query)
