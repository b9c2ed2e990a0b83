#!/usr/bin/env python3
"""Soak: mixed load on one worker for a set time, watching for slow leaks.

    python tests/soak/soak.py --duration 1800 [--transport shm] [--out soak.json]

Caller threads share one MoltClient and loop over a mix: echo, list_items pages (following
cursors), compute, short sleeps, calls that time out (and are cancelled), invalid payloads,
and pings, with a little think time so the load stays bounded on a small machine. Every
--sample-every seconds the worker's and this process's resident set, open descriptors and
threads are sampled from /proc.

After the warm-up (--warmup-fraction of the run), the median of the first three samples is the
baseline and the median of the last three the end; the run fails (exit 1) if the end exceeds
the baseline by more than the tolerance (RSS: the larger of --rss-tolerance-pct and
--rss-tolerance-kb; descriptors and threads: --count-tolerance), if the worker was replaced
(it died), or if any call failed in a way the mix does not expect. The summary (every sample
too) goes to --out as JSON and its gist to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from molt_accel import InvalidInput, MoltClient, MoltError, Timeout  # noqa: E402
from reliability_support import TEST_EXPORTS, WORKER_BIN, fd_count, status_value  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, required=True, help="seconds of load")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=4, help="caller threads")
    parser.add_argument("--think-ms", type=float, default=2.0, help="pause between a thread's calls")
    parser.add_argument("--rss-tolerance-pct", type=float, default=10.0)
    parser.add_argument("--rss-tolerance-kb", type=int, default=16 * 1024)
    parser.add_argument("--count-tolerance", type=int, default=2, help="extra fds or threads allowed")
    parser.add_argument("--worker", default=str(WORKER_BIN))
    parser.add_argument("--transport", default="stdio", help="stdio or shm")
    parser.add_argument("--out", type=Path)
    return parser.parse_args()


def one_call(client: MoltClient, rng: random.Random, cursors: dict[int, str | None]) -> str:
    """Makes one call of the mix; returns the outcome's name, checking what it can."""
    pick = rng.random()
    if pick < 0.30:
        payload = {"token": rng.getrandbits(64), "pad": "x" * rng.randint(0, 8000)}
        return "echo" if client.call("echo", payload) == payload else "wrong reply"
    if pick < 0.55:
        user_id = rng.randint(1, 50)
        request: dict[str, object] = {"user_id": user_id, "limit": rng.choice([10, 50, 200])}
        if rng.random() < 0.3:
            request["q"] = rng.choice(["a", "falcon", "ember", "zz"])
        cursor = cursors.get(user_id)
        if cursor is not None and "q" not in request:
            request["cursor"] = cursor
        page = client.call("list_items", request, timeout_ms=5000)
        if "q" not in request:
            cursors[user_id] = page["next_cursor"]
        return "list_items"
    if pick < 0.70:
        n = rng.randint(1_000, 200_000)
        return "compute" if client.call("compute", {"n": n}, timeout_ms=5000)["n"] == n else "wrong reply"
    if pick < 0.80:
        ms = rng.randint(0, 5)
        return "sleep" if client.call("sleep", {"ms": ms}) == {"slept_ms": ms} else "wrong reply"
    if pick < 0.88:
        try:
            client.call("sleep", {"ms": 200}, timeout_ms=5)
        except Timeout:
            return "timeout"
        return "timeout missed"
    if pick < 0.96:
        try:
            client.call("compute", {"n": -1})
        except InvalidInput:
            return "invalid"
        return "invalid accepted"
    client.ping()
    return "ping"


def sample(pid: int) -> dict[str, float]:
    me = os.getpid()
    return {
        "t": time.monotonic(),
        "worker_rss_kb": status_value(pid, "VmRSS"),
        "worker_fds": fd_count(pid),
        "worker_threads": status_value(pid, "Threads"),
        "client_rss_kb": status_value(me, "VmRSS"),
        "client_fds": fd_count(me),
        "client_threads": status_value(me, "Threads"),
    }


def growth(samples: list[dict[str, float]], warmup_s: float, started: float, args: argparse.Namespace) -> dict:
    after = [s for s in samples if s["t"] - started >= warmup_s]
    if len(after) < 6:
        raise SystemExit(f"too few samples after warm-up ({len(after)}): run longer or sample more often")
    report = {}
    for key in ("worker_rss_kb", "worker_fds", "worker_threads", "client_rss_kb", "client_fds", "client_threads"):
        baseline = statistics.median(s[key] for s in after[:3])
        end = statistics.median(s[key] for s in after[-3:])
        if key.endswith("rss_kb"):
            allowed = max(baseline * args.rss_tolerance_pct / 100, args.rss_tolerance_kb)
        else:
            allowed = args.count_tolerance
        report[key] = {
            "baseline": baseline,
            "end": end,
            "max": max(s[key] for s in after),
            "growth": end - baseline,
            "allowed": allowed,
            "ok": end - baseline <= allowed,
        }
    return report


def main() -> int:
    args = parse_args()
    expected = {"echo", "list_items", "compute", "sleep", "timeout", "invalid", "ping"}
    outcomes: Counter[str] = Counter()
    outcomes_lock = threading.Lock()
    stop = threading.Event()
    client = MoltClient(
        worker_cmd=[args.worker],
        exports=TEST_EXPORTS,
        transport=args.transport,
        strict_shm=args.transport == "shm",
        max_restarts=0,
    )
    client.start()
    pid = client.worker_pid
    assert pid is not None

    def caller(seed: int) -> None:
        rng = random.Random(seed)
        cursors: dict[int, str | None] = {}
        while not stop.is_set():
            try:
                outcome = one_call(client, rng, cursors)
            except MoltError as exc:
                outcome = f"unexpected {type(exc).__name__}"
            with outcomes_lock:
                outcomes[outcome] += 1
            time.sleep(args.think_ms / 1000)

    started = time.monotonic()
    samples = [sample(pid)]
    threads = [threading.Thread(target=caller, args=(seed,), daemon=True) for seed in range(args.threads)]
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() - started < args.duration:
            time.sleep(min(args.sample_every, max(0.0, args.duration - (time.monotonic() - started))))
            if client.worker_pid != pid:
                break
            samples.append(sample(pid))
    finally:
        stop.set()
        for thread in threads:
            thread.join(30.0)
        replaced = client.worker_pid != pid
        client.close()
    elapsed = time.monotonic() - started
    report = growth(samples, args.duration * args.warmup_fraction, started, args)
    unexpected = {k: v for k, v in outcomes.items() if k not in expected}
    passed = all(r["ok"] for r in report.values()) and not unexpected and not replaced
    summary = {
        "transport": args.transport,
        "duration_s": round(elapsed, 1),
        "calls": sum(outcomes.values()),
        "calls_per_s": round(sum(outcomes.values()) / elapsed, 1),
        "outcomes": dict(outcomes),
        "worker_replaced": replaced,
        "growth_after_warmup": report,
        "passed": passed,
        "samples": [{k: (round(v - started, 1) if k == "t" else v) for k, v in s.items()} for s in samples],
    }
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=1))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
