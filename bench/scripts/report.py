#!/usr/bin/env python3
"""Turns a benchmark `result.json` into `summary.md` and PNG plots.

Run on its own to redraw an existing result directory:
`python bench/scripts/report.py bench/results/<UTC date-time>`.

The summary pairs each offloaded endpoint with its pure-Python twin at the same work size and
concurrency: `/offload` and `/offload_async` against `/baseline`, `/offload/compute` against
`/baseline/compute`. A ratio above 1 means the offloaded path serves more requests per second;
for latency a ratio below 1 means the offloaded path answers faster.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from db_bench import DB_ENDPOINTS

Run = dict[str, Any]

# Which baseline each offloaded endpoint is compared with.
TWINS = {
    "/offload": "/baseline",
    "/offload_async": "/baseline",
    "/offload/compute": "/baseline/compute",
    "/db/offload": "/db/baseline",
    "/db/entry": "/db/baseline",
}
# Mean CPU of unrelated processes (percent of one core) above which a run is flagged.
DISTURBED_OTHER_CPU_PCT = 20.0
DATA_ENDPOINTS = ("/data/baseline", "/data/inproc", "/data/offload")
ENDPOINT_ORDER = ["/trivial", "/trivial_async", "/baseline", "/offload", "/offload_async", "/baseline/compute",
                  "/offload/compute", *DATA_ENDPOINTS]
CEILING_ENDPOINTS = ("/trivial", "/trivial_async")
# The ceiling each endpoint is held against: the trivial view served the same way (sync by
# gunicorn, async by uvicorn), at the same concurrency.
CEILINGS = {
    "/baseline": "/trivial",
    "/offload": "/trivial",
    "/baseline/compute": "/trivial",
    "/offload/compute": "/trivial",
    "/offload_async": "/trivial_async",
    **{endpoint: "/trivial" for endpoint in DATA_ENDPOINTS},
}


def endpoint_rank(endpoint: str) -> int:
    return ENDPOINT_ORDER.index(endpoint) if endpoint in ENDPOINT_ORDER else len(ENDPOINT_ORDER)


def work_label(run: Run) -> str:
    """`rows=200`, `n=1000`; a dash for the ceiling steps, which have no work size."""
    param = run.get("work_param", "rows")
    return "–" if param == "ceiling" else f"{param}={run['rows']}"


def us_per_request(ms: float | None) -> float | None:
    return None if ms is None else ms * 1000.0


def cpu_accounting(runs: list[Run]) -> list[dict[str, Any]]:
    """Per closed-loop step: CPU µs per request of Django, the worker and the load tool, the
    worker's exec mean, and what offloading costs beyond the work itself:

        overhead = (Django µs/req − the ceiling step's Django µs/req) + (worker µs/req − exec mean)

    that is, what Django spends beyond answering a constant (calling, decoding, rendering)
    plus what the worker spends beyond executing the entry (waiting, waking, hopping,
    framing). For `/baseline` the first term is the CPython work itself."""
    index = index_runs(runs)
    rows = []
    for run in sorted(runs, key=lambda run: (endpoint_rank(run["endpoint"]), run["rows"], run["concurrency"])):
        ceiling_name = CEILINGS.get(run["endpoint"])
        ceiling = index.get((ceiling_name, 0, run["concurrency"])) if ceiling_name else None
        django_us = us_per_request(run.get("django_cpu_ms_per_request"))
        worker_us = us_per_request(run.get("worker_cpu_ms_per_request"))
        exec_mean = run.get("exec_us_mean")
        ceiling_django_us = us_per_request(ceiling.get("django_cpu_ms_per_request")) if ceiling else None
        overhead = None
        if run.get("worker_calls") and None not in (django_us, worker_us, exec_mean, ceiling_django_us):
            overhead = (django_us - ceiling_django_us) + (worker_us - exec_mean)
        rows.append({
            "endpoint": run["endpoint"],
            "work": work_label(run),
            "work_param": run.get("work_param", "rows"),
            "rows": run["rows"],
            "concurrency": run["concurrency"],
            "rps": run["rps"],
            "ceiling": ceiling_name,
            "share_of_ceiling": ratio(run["rps"], ceiling["rps"]) if ceiling else None,
            "django_us_per_request": django_us,
            "worker_us_per_request": worker_us,
            "load_tool_us_per_request": us_per_request(run.get("load_tool_cpu_ms_per_request")),
            "exec_us_mean": exec_mean,
            "ceiling_django_us_per_request": ceiling_django_us,
            "overhead_us": overhead,
        })
    return rows


def index_runs(runs: Iterable[Run]) -> dict[tuple[str, int, int], Run]:
    return {(run["endpoint"], run["rows"], run["concurrency"]): run for run in runs}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def comparison_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per offloaded run that has a baseline twin at the same rows and concurrency."""
    runs = index_runs(result["runs"])
    rows = []
    for (endpoint, work, concurrency), run in sorted(
        runs.items(), key=lambda item: (endpoint_rank(item[0][0]), item[0][1], item[0][2])
    ):
        twin_name = TWINS.get(endpoint)
        if twin_name is None:
            continue
        twin = runs.get((twin_name, work, concurrency))
        if twin is None:
            continue
        rows.append(
            {
                "endpoint": endpoint,
                "baseline": twin_name,
                "work_param": run.get("work_param", "rows"),
                "rows": work,
                "concurrency": concurrency,
                "baseline_rps": twin["rps"],
                "offload_rps": run["rps"],
                "rps_ratio": ratio(run["rps"], twin["rps"]),
                "baseline_p99_ms": twin["p99_ms"],
                "offload_p99_ms": run["p99_ms"],
                "p99_ratio": ratio(run["p99_ms"], twin["p99_ms"]),
                "baseline_p999_ms": twin["p999_ms"],
                "offload_p999_ms": run["p999_ms"],
                "p999_ratio": ratio(run["p999_ms"], twin["p999_ms"]),
                "baseline_error_rate": twin["error_rate"],
                "offload_error_rate": run["error_rate"],
            }
        )
    return rows


def headline(result: dict[str, Any]) -> dict[str, Any] | None:
    """The `/offload` vs `/baseline` comparison at the largest list_items work size, at the
    concurrency where `/offload` served the most requests per second; plus the crossover."""
    pairs = [row for row in comparison_rows(result) if row["endpoint"] == "/offload"]
    if not pairs:
        return None
    largest = max(row["rows"] for row in pairs)
    at_largest = [row for row in pairs if row["rows"] == largest]
    best = max(at_largest, key=lambda row: row["offload_rps"])
    return {**best, "crossover_rows": crossover_rows(pairs)}


def crossover_rows(pairs: list[dict[str, Any]]) -> int | None:
    """The smallest measured `rows` from which `/offload` out-serves `/baseline` at every
    measured concurrency (None when it never does)."""
    by_rows: dict[int, list[float | None]] = {}
    for row in pairs:
        by_rows.setdefault(row["rows"], []).append(row["rps_ratio"])
    winning = None
    for work in sorted(by_rows, reverse=True):
        if all(value is not None and value > 1.0 for value in by_rows[work]):
            winning = work
        else:
            break
    return winning


def summary_markdown(result: dict[str, Any]) -> str:
    settings = result["settings"]
    machine = result["machine"]
    lines = [
        f"# Demo benchmark — {result['started_at']}",
        "",
        f"Profile `{settings['profile']}`, transport `{settings['transport']}`, load tool "
        f"`{settings['load_tool']}`, {settings['django_workers']} Django processes per server, "
        f"{settings['duration_s']} s per step after {settings['warmup_s']} s warm-up; "
        f"{machine['cores']} cores ({machine['cpu_model']}), commit `{result['git']['commit'][:12]}`"
        f"{' (dirty)' if result['git']['dirty'] else ''}.",
        "",
    ]
    others = [run["other_cpu_pct"] for run in result["runs"] if run.get("other_cpu_pct") is not None]
    if others:
        mean_other = sum(others) / len(others)
        lines += [
            f"Other processes on the machine used {mean_other:.0f} % of one core on average during the "
            f"steps (at most {max(others):.0f} %)"
            + (": **the machine was busy with other work; treat the figures as disturbed.**"
               if mean_other > DISTURBED_OTHER_CPU_PCT else "."),
            "",
        ]
    top = headline(result)
    if top is not None:
        crossover = top["crossover_rows"]
        lines += [
            "## Headline",
            "",
            f"At rows={top['rows']} and concurrency {top['concurrency']}: `/offload` serves "
            f"**{fmt(top['offload_rps'])} req/s** vs `/baseline` {fmt(top['baseline_rps'])} req/s "
            f"(**{fmt_ratio(top['rps_ratio'])}**); p99 {fmt(top['offload_p99_ms'], 2)} ms vs "
            f"{fmt(top['baseline_p99_ms'], 2)} ms, p99.9 {fmt(top['offload_p999_ms'], 2)} ms vs "
            f"{fmt(top['baseline_p999_ms'], 2)} ms.",
            "",
            (
                f"Crossover: offloading out-serves the baseline at every measured concurrency from "
                f"rows={crossover} on."
                if crossover is not None
                else "Crossover: at no measured work size does offloading out-serve the baseline at "
                "every concurrency."
            ),
            "",
        ]
    lines += [
        "## Throughput and tail latency, side by side",
        "",
        "Closed loop: each of `concurrency` connections sends its next request when the previous "
        "answer arrives. Ratios are offload / baseline (throughput: higher is better; latency: "
        "lower is better).",
        "",
        "| endpoint | work | conc | baseline req/s | offload req/s | ratio | baseline p99 ms | "
        "offload p99 ms | ratio | baseline p99.9 ms | offload p99.9 ms | errors b/o |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in comparison_rows(result):
        lines.append(
            f"| `{row['endpoint']}` | {row['work_param']}={row['rows']} | {row['concurrency']} | "
            f"{fmt(row['baseline_rps'])} | {fmt(row['offload_rps'])} | {fmt_ratio(row['rps_ratio'])} | "
            f"{fmt(row['baseline_p99_ms'], 2)} | {fmt(row['offload_p99_ms'], 2)} | "
            f"{fmt_ratio(row['p99_ratio'])} | {fmt(row['baseline_p999_ms'], 2)} | "
            f"{fmt(row['offload_p999_ms'], 2)} | {row['baseline_error_rate']:.2%} / "
            f"{row['offload_error_rate']:.2%} |"
        )
    lines += [
        "",
        "## Resources and worker metrics per step",
        "",
        "CPU is a percentage of one core over the measured window (the machine has "
        f"{machine['cores']}); \"other\" is everything else the machine ran meanwhile, so a "
        "disturbed step shows. queue/exec are the worker's own per-call figures from the client "
        "hooks' metrics JSONL.",
        "",
        "| endpoint | work | conc | req/s | p50 ms | p95 ms | Django CPU % | worker CPU % | "
        "load tool / other CPU % | Django RSS MiB | worker RSS MiB | queue µs p99 | exec µs p50 / p99 | "
        "queue depth p99 / max | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|---|",
    ]
    for run in sorted(
        result["runs"], key=lambda run: (endpoint_rank(run["endpoint"]), run["rows"], run["concurrency"])
    ):
        errors = ", ".join(f"{code}: {count}" for code, count in sorted(run["error_codes"].items())) or "none"
        lines.append(
            f"| `{run['endpoint']}` | {work_label(run)} | {run['concurrency']} | "
            f"{fmt(run['rps'])} | {fmt(run['p50_ms'], 2)} | {fmt(run['p95_ms'], 2)} | "
            f"{fmt(run['django_cpu_pct'])} | {fmt(run['worker_cpu_pct'])} | "
            f"{fmt(run['load_tool_cpu_pct'], 0)} / {fmt(run.get('other_cpu_pct'), 0)} | {fmt(run['django_rss_mb'])} | "
            f"{fmt(run['worker_rss_mb'])} | {fmt(run['queue_us_p99'], 0)} | "
            f"{fmt(run['exec_us_p50'], 0)} / {fmt(run['exec_us_p99'], 0)} | "
            f"{fmt(run['queue_depth_p99'], 0)} / {fmt(run['queue_depth_max'], 0)} | {errors} |"
        )
    lines += [
        "",
        "## CPU per request, against the ceiling",
        "",
        "CPU µs per request of each role over the step (all on the same cores), the worker's mean "
        "exec time, and the overhead of offloading: (Django µs/req − the ceiling step's Django "
        "µs/req) + (worker µs/req − exec mean), i.e. what Django spends beyond answering a "
        "constant plus what the worker spends beyond running the entry. The ceiling is "
        "`/trivial` (gunicorn) or `/trivial_async` (uvicorn) at the same concurrency; "
        "\"of ceiling\" is the step's req/s over the ceiling's.",
        "",
        "| endpoint | work | conc | req/s | of ceiling | Django µs/req | worker µs/req | load tool µs/req | "
        "exec mean µs | overhead µs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result.get("cpu_per_request") or cpu_accounting(result["runs"]):
        share = row["share_of_ceiling"]
        lines.append(
            f"| `{row['endpoint']}` | {row['work']} | {row['concurrency']} | {fmt(row['rps'])} | "
            f"{'–' if share is None else f'{share:.0%}'} | {fmt(row['django_us_per_request'], 0)} | "
            f"{fmt(row['worker_us_per_request'], 0)} | {fmt(row['load_tool_us_per_request'], 0)} | "
            f"{fmt(row['exec_us_mean'], 0)} | {fmt(row['overhead_us'], 0)} |"
        )
    fixed = result.get("fixed_rate_runs") or []
    if fixed:
        lines += [
            "",
            "## Same offered load, latency-corrected",
            "",
            "Open loop at a fixed request rate, the same for every endpoint of a work size; "
            "latencies count from when each request was due, so a stalled server is not "
            "flattered by the load tool waiting for it.",
            "",
            "| endpoint | work | rate req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | errors |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for run in sorted(fixed, key=lambda run: (run["rows"], endpoint_rank(run["endpoint"]))):
            lines.append(
                f"| `{run['endpoint']}` | {run.get('work_param', 'rows')}={run['rows']} | "
                f"{fmt(run['rate'])} | {fmt(run['rps'])} | {fmt(run['p50_ms'], 2)} | "
                f"{fmt(run['p99_ms'], 2)} | {fmt(run['p999_ms'], 2)} | {run['error_rate']:.2%} |"
            )
    lines += database_section(result["runs"])
    lines += data_section(result["runs"])
    cancellation = result.get("cancellation")
    if cancellation:
        lines += ["", "## Cancellation check", "", cancellation["summary"]]
    breakdown = result.get("breakdown")
    if breakdown:
        lines += ["", "## Where an `/offload` request spends its time", "", breakdown["summary"]]
    lines += [
        "",
        "Plots: `throughput.png`, `p99.png` (vs concurrency, one panel per work size), "
        "`cdf_*.png` (latency by percentile, one per endpoint).",
        "",
    ]
    return "\n".join(lines)


def database_section(runs: list[Run]) -> list[str]:
    """The `/db/*` steps with what each request costs each process, PostgreSQL included."""
    db_runs = [run for run in runs if run["endpoint"].startswith("/db/")]
    if not db_runs:
        return []
    lines = [
        "",
        "## PostgreSQL: ORM, offloaded queryset, Rust entry",
        "",
        "`/db/baseline` runs the ORM over psycopg in Django, `/db/offload` the same querysets in the "
        "worker (`molt_accel.querysets`), `/db/entry` a Rust entry on molt-db; the same bytes. "
        "CPU in µs per request.",
        "",
        "| endpoint | page | conc | req/s | p50 ms | p99 ms | p99.9 ms | Django µs | worker µs | "
        "PostgreSQL µs | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in sorted(db_runs, key=lambda run: (run["rows"], run["concurrency"], endpoint_rank(run["endpoint"]))):
        per_request = [run.get(f"{role}_cpu_ms_per_request") for role in ("django", "worker", "postgres")]
        lines.append(
            f"| `{run['endpoint']}` | {run['rows']} | {run['concurrency']} | {fmt(run['rps'])} | "
            f"{fmt(run['p50_ms'], 2)} | {fmt(run['p99_ms'], 2)} | {fmt(run['p999_ms'], 2)} | "
            + " | ".join(fmt(None if ms is None else ms * 1000, 0) for ms in per_request)
            + f" | {run['error_rate']:.2%} |"
        )
    return lines


def data_section(runs: list[Run]) -> list[str]:
    """The `/data/*` steps side by side per table size and concurrency, with each role's CPU
    and memory, and which endpoint wins what, read off those figures."""
    data_runs = [run for run in runs if run["endpoint"] in DATA_ENDPOINTS]
    if not data_runs:
        return []
    lines = [
        "",
        "## The data path: pandas, python polars and the worker",
        "",
        "`table_summary` of one `sales` table (docs/demo-contract.md): `/data/baseline` runs pandas "
        "in the Django process, `/data/inproc` python polars in the Django process, `/data/offload` "
        "sends the table to the worker as Arrow IPC (Polars there); the same bytes. CPU in µs per "
        "request. RSS in MiB, summed over the role's processes: the **peak** over the step's "
        "samples, the **rise** from the step's first sample to that peak (what its requests "
        "needed beyond what was resident before), and the shared-memory pages inside the peak "
        "(the rings, which count in Django's RSS and in the worker's alike). Each Django process "
        "keeps every table it has built, one per endpoint and size, so a peak includes the tables "
        "of earlier steps.",
        "",
        "| endpoint | table rows | conc | req/s | p50 ms | p99 ms | Django µs | worker µs | "
        "Django RSS peak / rise / shm | worker RSS peak / rise / shm | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for run in sorted(data_runs, key=lambda run: (run["rows"], run["concurrency"], endpoint_rank(run["endpoint"]))):
        errors = ", ".join(f"{code}: {count}" for code, count in sorted(run["error_codes"].items())) or "none"
        lines.append(
            f"| `{run['endpoint']}` | {run['rows']} | {run['concurrency']} | {fmt(run['rps'])} | "
            f"{fmt(run['p50_ms'], 2)} | {fmt(run['p99_ms'], 2)} | "
            f"{fmt(us_per_request(run.get('django_cpu_ms_per_request')), 0)} | "
            f"{fmt(us_per_request(run.get('worker_cpu_ms_per_request')), 0)} | "
            f"{memory_cell(run, 'django')} | {memory_cell(run, 'worker')} | {errors} |"
        )
    lines += ["", "Read off the table above (nothing here is measured twice or estimated):", ""]
    lines += data_winners(data_runs)
    return lines


def memory_cell(run: Run, role: str) -> str:
    peak, start, shm = (run.get(f"{role}_{key}") for key in ("rss_mb", "rss_start_mb", "shm_mb"))
    rise = None if peak is None or start is None else peak - start
    return f"{fmt(peak, 0)} / {fmt(rise, 0)} / {fmt(shm, 0)}"


# What `data_winners` compares, and whether the most or the least wins.
DATA_CONTESTS = (
    ("most requests per second", "rps", max),
    ("lowest p99", "p99_ms", min),
    ("least Django CPU per request", "django_cpu_ms_per_request", min),
    ("lowest Django RSS peak", "django_rss_mb", min),
)


def data_winners(data_runs: list[Run]) -> list[str]:
    """One line per contest: which endpoint wins it at which table size and concurrency."""
    steps: dict[tuple[int, int], list[Run]] = {}
    for run in data_runs:
        steps.setdefault((run["rows"], run["concurrency"]), []).append(run)
    lines = []
    for label, key, best in DATA_CONTESTS:
        places: dict[str, list[str]] = {}
        for (rows, concurrency), contenders in sorted(steps.items()):
            measured = [run for run in contenders if run.get(key) is not None and run["requests"]]
            if len(measured) < 2:
                continue
            winner = best(measured, key=lambda run: run[key])
            places.setdefault(winner["endpoint"], []).append(f"{rows} rows c={concurrency}")
        if places:
            wins = "; ".join(
                f"`{endpoint}` at {', '.join(where)}"
                for endpoint, where in sorted(places.items(), key=lambda item: endpoint_rank(item[0]))
            )
            lines.append(f"- {label[0].upper()}{label[1:]}: {wins}.")
    return lines


def draw_plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    runs = result["runs"]
    families = [
        ("list_items", [e for e in ENDPOINT_ORDER
                        if "compute" not in e and e not in CEILING_ENDPOINTS and e not in DATA_ENDPOINTS]),
        ("compute", [e for e in ENDPOINT_ORDER if "compute" in e]),
        ("items_page", list(DB_ENDPOINTS)),
        ("table_summary", list(DATA_ENDPOINTS)),
    ]
    # The ceiling steps have no work size: drawn dashed in every panel.
    ceiling_runs = [run for run in runs if run["endpoint"] in CEILING_ENDPOINTS]
    for metric, label, filename in (
        ("rps", "requests per second", "throughput.png"),
        ("p99_ms", "p99 latency (ms)", "p99.png"),
    ):
        panels = []
        for family, endpoints in families:
            family_runs = [run for run in runs if run["endpoint"] in endpoints]
            for work in sorted({run["rows"] for run in family_runs}):
                panels.append((family, endpoints, work, family_runs))
        if not panels:
            continue
        figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
        for axis, (family, endpoints, work, family_runs) in zip(axes[0], panels, strict=True):
            for endpoint in endpoints:
                points = sorted(
                    (run["concurrency"], run[metric])
                    for run in family_runs
                    if run["endpoint"] == endpoint and run["rows"] == work
                )
                if points:
                    axis.plot(*zip(*points, strict=True), marker="o", label=endpoint)
            for endpoint in CEILING_ENDPOINTS:
                points = sorted((run["concurrency"], run[metric]) for run in ceiling_runs if run["endpoint"] == endpoint)
                if points:
                    axis.plot(*zip(*points, strict=True), linestyle="--", marker=".", label=endpoint)
            work_param = next((r.get("work_param", "rows") for r in family_runs if r["rows"] == work), "rows")
            axis.set_title(f"{family}, {work_param}={work}")
            concurrencies = sorted({run["concurrency"] for run in family_runs if run["rows"] == work})
            axis.set_xscale("log", base=2)
            axis.set_xticks(concurrencies, [str(c) for c in concurrencies])
            axis.minorticks_off()
            axis.set_yscale("log")
            axis.set_xlabel("concurrency")
            axis.set_ylabel(label)
            axis.grid(True, which="both", alpha=0.3)
            axis.legend(fontsize="small")
        figure.tight_layout()
        path = out_dir / filename
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)

    for endpoint in sorted({run["endpoint"] for run in runs}, key=endpoint_rank):
        endpoint_runs = sorted(
            (run for run in runs if run["endpoint"] == endpoint), key=lambda run: (run["rows"], run["concurrency"])
        )
        figure, axis = plt.subplots(figsize=(6.5, 4.2))
        for run in endpoint_runs:
            percentiles = sorted((float(p), ms) for p, ms in run["latency_percentiles"].items())
            if not percentiles:
                continue
            # "Latency by percentile": x is 1/(1-p) on a log axis so the tail gets the room.
            xs = [1.0 / (1.0 - p / 100.0) if p < 100 else 1e5 for p, _ in percentiles]
            axis.plot(xs, [ms for _, ms in percentiles], marker=".",
                      label=f"{run.get('work_param', 'rows')}={run['rows']}, c={run['concurrency']}")
        ticks = [(2, "50%"), (10, "90%"), (100, "99%"), (1000, "99.9%"), (10000, "99.99%")]
        axis.set_xscale("log")
        axis.set_xticks([t for t, _ in ticks], [name for _, name in ticks])
        axis.set_yscale("log")
        axis.set_xlabel("percentile")
        axis.set_ylabel("latency (ms)")
        axis.set_title(f"{endpoint}: latency by percentile")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize="x-small", ncol=2)
        figure.tight_layout()
        path = out_dir / f"cdf_{endpoint.strip('/').replace('/', '_')}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def write_report(result_dir: Path) -> str:
    """Writes `summary.md` and the plots next to `result.json`; returns the summary text."""
    result = json.loads((result_dir / "result.json").read_text())
    summary = summary_markdown(result)
    (result_dir / "summary.md").write_text(summary)
    draw_plots(result, result_dir)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result_dir", type=Path)
    args = parser.parse_args()
    print(write_report(args.result_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
