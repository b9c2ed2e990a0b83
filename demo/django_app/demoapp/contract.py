"""The demo contract in pure Python: the reference that `/baseline` runs and `molt_worker`
must match byte for byte.

`docs/demo-contract.md` is the specification; this module and
`demo/worker_app/src/{fakedb,list_items,compute}.rs` implement it. Nothing here imports Django,
so the module can be used (and tested) on its own:

>>> from demoapp.contract import list_items
>>> page = list_items({"user_id": 7, "limit": 2, "rows": 10})
>>> [item["id"] for item in page["items"]], page["next_cursor"]
([10, 9], 'v1:9')

Payloads arrive already decoded (a dict of ints and strings); turning a query string into
ints is the caller's job. Invalid input raises `ContractError`, whose message is exactly the
one the worker puts in its InvalidInput reply.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = [
    "ContractError",
    "CostKnobs",
    "compute",
    "cost_knobs",
    "created_at_iso",
    "list_items",
    "row_title",
    "splitmix64_output",
]

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15

USER_ID_MAX = 2**31 - 1
Q_MAX_CHARS = 100
STATUSES = ("open", "closed", "all")
LIMIT_MAX = 500
LIMIT_DEFAULT = 50
ROWS_MAX = 200_000
ROWS_DEFAULT = 2000
CURSOR_PREFIX = "v1:"
EPOCH_BASE = 1_704_067_200  # 2024-01-01T00:00:00Z
ROW_SPACING_S = 600

COMPUTE_N_MAX = 50_000_000
COMPUTE_SEED_MAX = 2**63 - 1
COMPUTE_BUCKETS_MAX = 100
COMPUTE_BUCKETS_DEFAULT = 10
COMPUTE_VALUE_RANGE = 1_000_000

# Index = 6 bits of a row's title word; exactly 64 lowercase ASCII words, none longer than 10.
WORDS = (
    "alpha", "amber", "anchor", "apple", "arrow", "aspen", "atlas", "autumn",
    "badge", "basin", "beacon", "birch", "blaze", "bloom", "breeze", "bridge",
    "cable", "canyon", "cedar", "cinder", "clover", "comet", "coral", "crest",
    "delta", "dune", "ember", "falcon", "fern", "fjord", "flint", "forest",
    "garnet", "glacier", "granite", "harbor", "hazel", "horizon", "island", "jasper",
    "juniper", "lagoon", "lantern", "maple", "meadow", "mesa", "nebula", "oasis",
    "orbit", "pebble", "pine", "prairie", "quartz", "raven", "ridge", "river",
    "sierra", "summit", "thistle", "timber", "tundra", "valley", "willow", "zephyr",
)

_ASCII_FOLD = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}


class ContractError(ValueError):
    """A payload breaks the contract. `message` names `field` and is safe to show."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def splitmix64_output(seed: int, index: int) -> int:
    """Output number `index` (from 0) of splitmix64 seeded with `seed`."""
    return _mix((seed + (index + 1) * GAMMA) & MASK64)


def created_at_iso(epoch_s: int) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` for a non-negative Unix time, by the civil-from-days algorithm."""
    days, secs = divmod(epoch_s, 86400)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return (
        f"{year:04d}-{month:02d}-{day:02d}T"
        f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}Z"
    )


def row_title(title_word: int) -> str:
    """The title a row's second word encodes: 3 to 5 words of `WORDS`, space-separated."""
    count = 3 + title_word % 3
    return " ".join(WORDS[(title_word >> (8 + 6 * j)) & 63] for j in range(count))


@dataclass(frozen=True)
class CostKnobs:
    """Simulated database cost, read once from the environment (all 0 by default)."""

    delay_ms: int = 0
    decode_us_per_row: int = 0
    cpu_iters_per_row: int = 0


_KNOB_LIMITS = (
    ("MOLT_FAKE_DB_DELAY_MS", 60_000),
    ("MOLT_FAKE_DB_DECODE_US_PER_ROW", 1_000),
    ("MOLT_FAKE_DB_CPU_ITERS", 1_000_000),
)


@cache
def cost_knobs() -> CostKnobs:
    """The knobs of this process: unset or empty is 0, a value over the cap is the cap, and
    anything but a decimal non-negative integer is 0 with a warning on stderr."""
    values = []
    for name, cap in _KNOB_LIMITS:
        raw = os.environ.get(name, "").strip()
        if not raw:
            values.append(0)
        elif raw.isascii() and raw.isdigit():
            values.append(min(int(raw), cap))
        else:
            print(f"molt demo: ignoring {name}: not a non-negative integer", file=sys.stderr)
            values.append(0)
    return CostKnobs(*values)


def _int_in_range(payload: Mapping[Any, Any], field: str, low: int, high: int, default: int | None) -> int:
    value = payload.get(field)
    if value is None:
        if default is None:
            raise ContractError(field, f"{field} is required")
        return default
    if type(value) is not int or not low <= value <= high:
        raise ContractError(field, f"{field} must be an integer between {low} and {high}")
    return value


def _require_map(payload: Any) -> Mapping[Any, Any]:
    if not isinstance(payload, Mapping):
        raise ContractError("payload", "payload must be a map")
    return payload


@dataclass(frozen=True)
class _ListQuery:
    user_id: int
    q_folded: str | None
    status: str
    limit: int
    before_id: int
    rows: int


def _validate_list_items(payload: Any) -> _ListQuery:
    payload = _require_map(payload)
    user_id = _int_in_range(payload, "user_id", 1, USER_ID_MAX, None)

    q = payload.get("q")
    if q is not None and (type(q) is not str or len(q) > Q_MAX_CHARS):
        raise ContractError("q", f"q must be a string of at most {Q_MAX_CHARS} characters")

    status = payload.get("status")
    if status is None:
        status = "all"
    elif type(status) is not str or status not in STATUSES:
        raise ContractError("status", "status must be one of open, closed, all")

    limit = _int_in_range(payload, "limit", 1, LIMIT_MAX, LIMIT_DEFAULT)

    cursor = payload.get("cursor")
    before_id = ROWS_MAX + 1
    if cursor is not None:
        digits = cursor[len(CURSOR_PREFIX):] if type(cursor) is str else ""
        if (
            type(cursor) is not str
            or not cursor.startswith(CURSOR_PREFIX)
            or not (digits.isascii() and digits.isdigit())
            or digits.startswith("0")
            or len(digits) > 6
            or int(digits) > ROWS_MAX
        ):
            raise ContractError("cursor", "cursor must be the next_cursor of a previous reply")
        before_id = int(digits)

    rows = _int_in_range(payload, "rows", 0, ROWS_MAX, ROWS_DEFAULT)
    return _ListQuery(
        user_id=user_id,
        q_folded=q.translate(_ASCII_FOLD) if q else None,
        status=status,
        limit=limit,
        before_id=before_id,
        rows=rows,
    )


def _busy_until(deadline: float) -> None:
    while time.perf_counter() < deadline:
        pass


def list_items(payload: Any) -> dict[str, Any]:
    """The `list_items` entry: one page of a user's items, newest first, with counts."""
    query = _validate_list_items(payload)
    knobs = cost_knobs()
    if knobs.delay_ms:
        time.sleep(knobs.delay_ms / 1000)

    seed = query.user_id
    q_folded = query.q_folded
    wanted = query.status
    items: list[dict[str, Any]] = []
    counts = {"open": 0, "closed": 0}
    has_more = False
    decode_start = time.perf_counter()
    decode_s = knobs.decode_us_per_row / 1e6
    # Newest first: created_at grows strictly with the id, so descending ids are the order.
    for generated, index in enumerate(range(query.rows - 1, -1, -1), start=1):
        word = splitmix64_output(seed, 2 * index)
        if knobs.cpu_iters_per_row:
            _burn(word, knobs.cpu_iters_per_row)
        if decode_s:
            _busy_until(decode_start + generated * decode_s)
        title = None
        if q_folded is not None:
            title = row_title(splitmix64_output(seed, 2 * index + 1))
            if q_folded not in title:
                continue
        status = "open" if (word >> 16) % 10 < 3 else "closed"
        counts[status] += 1
        row_id = index + 1
        if row_id >= query.before_id or (wanted != "all" and wanted != status):
            continue
        if len(items) == query.limit:
            has_more = True
            continue
        if title is None:
            title = row_title(splitmix64_output(seed, 2 * index + 1))
        items.append(
            {
                "id": row_id,
                "created_at": created_at_iso(EPOCH_BASE + index * ROW_SPACING_S + word % ROW_SPACING_S),
                "status": status,
                "title": title,
                "score": (word >> 32) % 1000,
                "unread": (word >> 48) & 3 == 0,
            }
        )
    return {
        "items": items,
        "next_cursor": f"{CURSOR_PREFIX}{items[-1]['id']}" if has_more else None,
        "counts": counts,
    }


def _burn(word: int, iterations: int) -> int:
    for _ in range(iterations):
        word = _mix((word + GAMMA) & MASK64)
    return word


def compute(payload: Any, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """The `compute` entry: statistics and a histogram over `n` splitmix64 values.

    `should_stop`, when given, is polled every 4096 values; the call then raises
    `InterruptedError` (the worker's counterpart answers Cancelled).
    """
    payload = _require_map(payload)
    n = _int_in_range(payload, "n", 1, COMPUTE_N_MAX, None)
    seed = _int_in_range(payload, "seed", 0, COMPUTE_SEED_MAX, 0)
    buckets = _int_in_range(payload, "buckets", 1, COMPUTE_BUCKETS_MAX, COMPUTE_BUCKETS_DEFAULT)

    histogram = [0] * buckets
    total = 0
    low = COMPUTE_VALUE_RANGE
    high = -1
    state = seed
    for k in range(n):
        if should_stop is not None and k % 4096 == 0 and should_stop():
            raise InterruptedError("compute stopped")
        state = (state + GAMMA) & MASK64
        value = _mix(state) % COMPUTE_VALUE_RANGE
        total += value
        if value < low:
            low = value
        if value > high:
            high = value
        histogram[value * buckets // COMPUTE_VALUE_RANGE] += 1
    return {
        "n": n,
        "seed": seed,
        "sum": total,
        "min": low,
        "max": high,
        "mean": total / n,
        "histogram": histogram,
    }
