"""Per-call metrics the Django processes append to the JSONL file named by
`MOLT_DEMO_METRICS_PATH` (one object a line, written by molt_accel's hooks).

The benchmark notes the file's size before and after each load step and summarises the lines
in between, so every step gets the worker's own view of its calls: time in the admission
queue, time executing, queue depth at admission, and the client's round trip.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any


def file_size(path: Path) -> int:
    """Current size of `path` in bytes (0 if it does not exist yet)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_records(path: Path, start: int, end: int | None = None) -> list[dict[str, Any]]:
    """The complete JSON lines written between byte offsets `start` and `end`."""
    if not path.exists():
        return []
    with path.open("rb") as metrics_file:
        metrics_file.seek(start)
        data = metrics_file.read() if end is None else metrics_file.read(max(end - start, 0))
    records = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            # A line cut by the step boundary (a writer mid-append); it belongs to no step.
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(pct / 100.0 * len(ordered)) - 1, 0)
    return float(ordered[min(rank, len(ordered) - 1)])


def summarise(records: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[str, Any]:
    """mean/p50/p99/max of each numeric field over `records`, and the count of each status."""
    summary: dict[str, Any] = {
        "calls": len(records),
        "statuses": dict(Counter(str(record.get("status")) for record in records)),
    }
    for name in fields:
        values = [float(record[name]) for record in records if isinstance(record.get(name), int | float)]
        summary[f"{name}_mean"] = sum(values) / len(values) if values else None
        summary[f"{name}_p50"] = percentile(values, 50)
        summary[f"{name}_p99"] = percentile(values, 99)
        summary[f"{name}_max"] = max(values) if values else None
    return summary
