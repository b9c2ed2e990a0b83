"""`items_page`: a page of a user's items, newest first, with the per-status counts.

The `/db/*` endpoints answer it three ways, byte for byte the same (docs/demo-contract.md,
"items_page"): `/db/baseline` with the ORM over psycopg, `/db/offload` with the same querysets
run by the worker (`molt_accel.querysets`), `/db/entry` by the worker's Rust entry
`items_page` (demo/worker_app/src/items_page.rs). This module holds what the two Python paths
share: the request's validation (the Rust entry's rules and messages), the querysets, and the
body built from their rows.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.http import QueryDict

from .contract import ContractError
from .models import Item
from .query import payload_from_query

STATUSES = ("open", "closed", "archived")
USER_ID_MAX = 2**31 - 1
LIMIT_MAX = 5_000
LIMIT_DEFAULT = 50
ITEM_FIELDS = ("id", "category", "status", "title", "score", "created_at")
CURSOR_PREFIX = "v1:"
CURSOR_MESSAGE = "cursor must be the next_cursor of a previous reply"
_CURSOR = re.compile(r"v1:(0|[1-9][0-9]{0,17}):([1-9][0-9]{0,18})")
_CREATED_US_MAX = 253_402_300_799_999_999
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_MICROSECOND = datetime.timedelta(microseconds=1)


@dataclass(frozen=True)
class PageRequest:
    user_id: int
    #: None: every status.
    status: str | None
    limit: int
    #: The previous page's last item: (created_at, id).
    after: tuple[datetime.datetime, int] | None


def page_payload(query: QueryDict | Mapping[str, str]) -> dict[str, Any]:
    """The entry's payload for a query string (`/db/entry` sends it as it is)."""
    return payload_from_query(query, ("user_id", "limit"), ("status", "cursor"))


def _int(payload: Mapping[str, Any], field: str, high: int, default: int | None) -> int:
    value = payload.get(field)
    if value is None:
        if default is None:
            raise ContractError(field, f"{field} is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ContractError(field, f"{field} must be an integer between 1 and {high}")
    return value


def parse_page_request(payload: Mapping[str, Any]) -> PageRequest:
    """The request, checked in the entry's order with its messages (ContractError)."""
    user_id = _int(payload, "user_id", USER_ID_MAX, None)
    status = payload.get("status")
    if status is not None and status != "all" and status not in STATUSES:
        raise ContractError("status", "status must be one of open, closed, archived, all")
    limit = _int(payload, "limit", LIMIT_MAX, LIMIT_DEFAULT)
    cursor = payload.get("cursor")
    after = None
    if cursor is not None:
        after = _parse_cursor(cursor)
    return PageRequest(user_id, None if status in (None, "all") else status, limit, after)


def _parse_cursor(cursor: Any) -> tuple[datetime.datetime, int]:
    match = _CURSOR.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise ContractError("cursor", CURSOR_MESSAGE)
    created_us, item_id = int(match[1]), int(match[2])
    if created_us > _CREATED_US_MAX or item_id > 2**63 - 1:
        raise ContractError("cursor", CURSOR_MESSAGE)
    return _EPOCH + created_us * _MICROSECOND, item_id


def page_queryset(
    user_id: int, status: str | None, limit: int, after: tuple[datetime.datetime, int] | None
) -> QuerySet[Item, dict[str, Any]]:
    """The page, one row more than `limit`: that row only says whether there is a next page."""
    items = Item.objects.filter(user_id=user_id)
    if status is not None:
        items = items.filter(status=status)
    if after is not None:
        created_at, item_id = after
        # `created_at <= c AND (created_at < c OR id < i)`: the first term bounds the index scan.
        items = items.filter(created_at__lte=created_at).filter(Q(created_at__lt=created_at) | Q(id__lt=item_id))
    return items.order_by("-created_at", "-id").values(*ITEM_FIELDS)[: limit + 1]


def counts_queryset(user_id: int) -> QuerySet[Item, dict[str, Any]]:
    """The user's item count per status (statuses without items are absent)."""
    return Item.objects.filter(user_id=user_id).values("status").annotate(count=Count("id")).order_by()


def page_body(request: PageRequest, rows: Sequence[dict[str, Any]], counts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The response body for the page's rows (up to limit + 1) and the counts' rows."""
    items = list(rows[: request.limit])
    next_cursor = None
    if len(rows) > request.limit:
        last = items[-1]
        next_cursor = f"{CURSOR_PREFIX}{(last['created_at'] - _EPOCH) // _MICROSECOND}:{last['id']}"
    per_status = dict.fromkeys(STATUSES, 0)
    for row in counts:
        per_status[row["status"]] = row["count"]
    return {"items": items, "next_cursor": next_cursor, "counts": per_status}
