#!/usr/bin/env python3
"""The data path, measured from a Python process: the demo's ``table_summary`` contract
(docs/demo-contract.md) computed three ways on the same table, at 10k, 100k and 1M rows.

- ``pandas``: in this process, as a view does it today;
- ``polars``: in this process, polars' lazy engine (the strong in-process peer);
- ``worker``: ``molt_accel.arrow.call_table_value`` to a molt_worker over shm.

Each way runs ``--calls`` calls from ``--threads`` threads of this process. Printed per size
and way: calls/s, p50 and p99 latency, CPU seconds of this process and of the worker, and
peak RSS of this process (whole run, ru_maxrss) and of the worker (VmHWM). No assertion: a
measuring tool. Use a release worker: ``make build-release`` then
``python bench/scripts/data_path_bench.py --worker target/release/molt_worker``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

from molt_accel import MoltClient
from molt_accel.arrow import call_table_value

REPO = Path(__file__).resolve().parents[2]


def sales(rows: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "region": pa.array(rng.choice(["north", "south", "east", "west"], rows)),
            "product_id": rng.integers(0, 50, rows, dtype=np.int64),
            "quantity": rng.integers(1, 20, rows, dtype=np.int64),
            "price": rng.integers(100, 10_000, rows).astype(np.float64) / 100,
        }
    )


def pandas_summary(df: pd.DataFrame, min_quantity: int) -> dict[str, Any]:
    kept = df[df.quantity >= min_quantity]
    grouped = kept.groupby("region", sort=True)
    agg = grouped.agg(count=("id", "size"), quantity_sum=("quantity", "sum"), price_mean=("price", "mean"))
    agg["price_p90"] = grouped.price.quantile(0.9)
    return {"rows": len(df), "kept": len(kept), "groups": agg.reset_index().to_dict("records")}


def polars_summary(df: pl.DataFrame, min_quantity: int) -> dict[str, Any]:
    groups = (
        df.lazy()
        .filter(pl.col("quantity") >= min_quantity)
        .group_by("region")
        .agg(
            pl.len().alias("count"),
            pl.col("quantity").sum().alias("quantity_sum"),
            pl.col("price").mean().alias("price_mean"),
            pl.col("price").quantile(0.9, interpolation="linear").alias("price_p90"),
        )
        .sort("region")
        .collect()
    )
    return {"rows": df.height, "kept": int(groups["count"].sum()), "groups": groups.to_dicts()}


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(call: Callable[[], object], calls: int, threads: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = max(1, calls // threads)

    def worker() -> None:
        mine = []
        for _ in range(per_thread):
            started = time.perf_counter()
            call()
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", default=str(REPO / "target" / "release" / "molt_worker"))
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", help="also write the figures here, one JSON object per line")
    args = parser.parse_args()

    frame_limit = 96 << 20
    client = MoltClient(
        transport="shm",
        worker_cmd=[args.worker, "--ring-bytes", str(1 << 28), "--max-frame-bytes", str(frame_limit)],
        max_frame_bytes=frame_limit,
        timeout_ms=60_000,
    ).start()
    pid = client.worker_pid
    assert pid is not None
    rows_out = []
    print(f"{'rows':>8} {'way':>7} {'calls/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'py cpu s':>8} {'wk cpu s':>8}"
          f" {'py rss MB':>9} {'wk rss MB':>9}")
    try:
        for rows in [int(size) for size in args.sizes.split(",")]:
            table = sales(rows)
            df_pandas = table.to_pandas()
            df_polars = pl.from_arrow(table)
            assert isinstance(df_polars, pl.DataFrame)
            ways: dict[str, Callable[[], object]] = {
                "pandas": lambda: pandas_summary(df_pandas, 5),
                "polars": lambda: polars_summary(df_polars, 5),
                "worker": lambda: call_table_value(client, "table_summary", table, params={"min_quantity": 5}),
            }
            reference = ways["worker"]()
            assert isinstance(reference, dict) and reference["kept"] == pandas_summary(df_pandas, 5)["kept"]
            for way, call in ways.items():
                call()  # warm up
                cpu_before = time.process_time()
                worker_before = proc_cpu_s(pid)
                elapsed, latencies = run(call, args.calls, args.threads)
                latencies.sort()
                figures = {
                    "rows": rows,
                    "way": way,
                    "threads": args.threads,
                    "calls_per_s": len(latencies) / elapsed,
                    "p50_ms": statistics.median(latencies) * 1e3,
                    "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3,
                    "python_cpu_s": time.process_time() - cpu_before,
                    "worker_cpu_s": proc_cpu_s(pid) - worker_before,
                    "python_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "worker_peak_rss_mb": proc_hwm_mb(pid),
                }
                rows_out.append(figures)
                print(f"{rows:>8} {way:>7} {figures['calls_per_s']:>8.1f} {figures['p50_ms']:>8.2f}"
                      f" {figures['p99_ms']:>8.2f} {figures['python_cpu_s']:>8.2f} {figures['worker_cpu_s']:>8.2f}"
                      f" {figures['python_peak_rss_mb']:>9.0f} {figures['worker_peak_rss_mb']:>9.0f}", flush=True)
    finally:
        client.close()
    if args.json:
        with open(args.json, "a") as out:
            for figures in rows_out:
                out.write(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
