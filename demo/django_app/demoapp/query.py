"""Query string → contract payload, shared by the baseline and the offloaded views.

Both paths build their payload here and nowhere else, so they see the same dict and the
contract (`contract.py` on the baseline path, the worker on the offload path) is the one
judge of what is valid. This function only changes representation:

- A field the contract types as an integer becomes an `int` when its text is a plain decimal
  integer within 64 bits (`-?[0-9]+`); any other text is passed on unchanged, so the contract
  rejects it with its own message (which is the same for "not an integer" and "out of range").
- A missing field is left out, so the contract applies its own default.
- Parameters the contract does not name are ignored; for a repeated one the last value wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.http import QueryDict

LIST_ITEMS_INT_FIELDS = ("user_id", "limit", "rows")
LIST_ITEMS_STR_FIELDS = ("q", "status", "cursor")
COMPUTE_INT_FIELDS = ("n", "seed", "buckets")

_DECIMAL = re.compile(r"-?[0-9]{1,20}")
_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1


def _as_int_if_decimal(text: str) -> int | str:
    if _DECIMAL.fullmatch(text):
        value = int(text)
        # Beyond what msgpack can carry the text goes on as text: rejected the same way.
        if _I64_MIN <= value <= _U64_MAX:
            return value
    return text


def payload_from_query(
    query: QueryDict | Mapping[str, str],
    int_fields: tuple[str, ...],
    str_fields: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The contract payload for a query string: the named fields only, integers parsed."""
    payload: dict[str, Any] = {}
    for name in int_fields:
        if name in query:
            payload[name] = _as_int_if_decimal(query[name])
    for name in str_fields:
        if name in query:
            payload[name] = query[name]
    return payload


def list_items_payload(query: QueryDict | Mapping[str, str]) -> dict[str, Any]:
    """Payload of the `list_items` entry: user_id, q, status, limit, cursor, rows."""
    return payload_from_query(query, LIST_ITEMS_INT_FIELDS, LIST_ITEMS_STR_FIELDS)


def compute_payload(query: QueryDict | Mapping[str, str]) -> dict[str, Any]:
    """Payload of the `compute` entry: n, seed, buckets."""
    return payload_from_query(query, COMPUTE_INT_FIELDS)
