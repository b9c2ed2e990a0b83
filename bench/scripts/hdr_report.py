#!/usr/bin/env python3
"""Merge HdrHistogram interval logs (.hlog) and report latency percentiles per tag.

Reads the worker's logs (`--metrics-dir`, tags `entry.series`: queue, exec, total,
queue_depth) and the client's (`METRICS_DIR`, tags `entry.transport.series`: round_trip,
encode, decode), or any standard .hlog. Intervals with the same tag are added up across all
files and all intervals. Prints a percentile table per tag; `--png` draws the classic
"latency by percentile" chart (x axis 1/(1-percentile), log-scaled, so 90%, 99%, 99.9%...
are evenly spaced); `--json` writes the table for a benchmark report.

    bench/scripts/hdr_report.py metrics/ --png latency.png --json percentiles.json
    bench/scripts/hdr_report.py worker.hlog client.hlog --tags 'list_items.*'

Times are logged in nanoseconds and shown in microseconds; `*.queue_depth` tags count calls.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.iterators import PercentileIterator
from hdrh.log import HistogramLogReader

#: Tag given to interval lines that carry none.
UNTAGGED = "(untagged)"
#: Percentiles in the table and the JSON.
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
#: Largest value a merged histogram holds: 2^45 ns is 9.7 hours.
HIGHEST_TRACKABLE = 2**45
#: Tags drawn when --tags is not given: the end-to-end series of each side.
DEFAULT_PLOT_SUFFIXES = (".total", ".round_trip")


def is_count(tag: str) -> bool:
    """Whether a tag's values are counts (queue depth) rather than nanoseconds."""
    return tag.endswith(".queue_depth")


def log_files(paths: Iterable[Path]) -> list[Path]:
    """The .hlog files named, directories expanded to the .hlog files in them."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob("*.hlog")))
        elif path.is_file():
            files.append(path)
        else:
            raise SystemExit(f"hdr_report: no such file or directory: {path}")
    return files


def merge(files: Iterable[Path]) -> dict[str, HdrHistogram]:
    """Every interval of every file, added up per tag. Empty intervals are skipped (an idle
    entry logs one per interval) but their tags are kept, so an idle entry shows as 0 calls."""
    merged: dict[str, HdrHistogram] = {}
    for path in files:
        reader = HistogramLogReader(str(path), HdrHistogram(1, 2, 3))
        while (interval := reader.get_next_interval_histogram()) is not None:
            tag = interval.get_tag() or UNTAGGED
            total = merged.setdefault(tag, HdrHistogram(1, HIGHEST_TRACKABLE, 3))
            if interval.get_total_count():
                total.add(interval)
    return merged


def select(histograms: dict[str, HdrHistogram], patterns: list[str] | None,
           default: tuple[str, ...] | None = None) -> list[str]:
    """Tags matching any glob in `patterns`; without patterns, those ending in one of
    `default` (or every tag if `default` is None)."""
    tags = sorted(histograms)
    if patterns:
        return [tag for tag in tags if any(fnmatch.fnmatchcase(tag, p) for p in patterns)]
    if default is None:
        return tags
    return [tag for tag in tags if tag.endswith(default)]


def show(tag: str, value: float) -> float:
    """A logged value in display units: microseconds for times, calls for depths."""
    return value if is_count(tag) else value / 1000.0


def summary(tag: str, histogram: HdrHistogram) -> dict[str, float | int | str]:
    row: dict[str, float | int | str] = {
        "count": histogram.get_total_count(),
        "unit": "calls" if is_count(tag) else "us",
    }
    if histogram.get_total_count():
        for percentile in PERCENTILES:
            row[f"p{percentile:g}"] = show(tag, histogram.get_value_at_percentile(percentile))
        row["max"] = show(tag, histogram.get_max_value())
        row["mean"] = round(show(tag, histogram.get_mean_value()), 3)
    return row


def print_table(rows: dict[str, dict[str, float | int | str]], out=sys.stdout) -> None:
    columns = [f"p{p:g}" for p in PERCENTILES] + ["max"]
    width = max([len(tag) for tag in rows] + [3])
    print(f"{'tag':<{width}}  {'count':>10}  " + "  ".join(f"{c:>10}" for c in columns) + "  unit",
          file=out)
    for tag, row in rows.items():
        cells = "  ".join(f"{row[c]:>10.3f}" if c in row else f"{'-':>10}" for c in columns)
        print(f"{tag:<{width}}  {row['count']:>10}  {cells}  {row['unit']}", file=out)


def percentile_curve(histogram: HdrHistogram) -> tuple[list[float], list[float]]:
    """(x, value) points of the latency-by-percentile curve: x is 1/(1-percentile)."""
    xs: list[float] = []
    values: list[float] = []
    last_x = 1.0
    for step in PercentileIterator(histogram, 5):
        fraction = step.percentile_level_iterated_to / 100.0
        # The last step reaches 100%, whose 1/(1-p) is infinite: draw it one decade further.
        x = 1.0 / (1.0 - fraction) if fraction < 1.0 else last_x * 10
        xs.append(x)
        values.append(step.value_iterated_to)
        last_x = x
    return xs, values


def plot(histograms: dict[str, HdrHistogram], tags: list[str], path: Path, title: str,
         linear_y: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter

    figure, axes = plt.subplots(figsize=(10, 6), dpi=100)
    top = 10.0
    for tag in tags:
        histogram = histograms[tag]
        if not histogram.get_total_count() or is_count(tag):
            continue
        xs, values = percentile_curve(histogram)
        axes.step(xs, [v / 1000.0 for v in values], where="post",
                  label=f"{tag} ({histogram.get_total_count()} calls)")
        top = max(top, xs[-1])
    axes.set_xscale("log")
    decades = range(0, int(math.ceil(math.log10(top))) + 1)
    axes.xaxis.set_major_locator(FixedLocator([10.0**d for d in decades]))
    axes.xaxis.set_major_formatter(FuncFormatter(
        lambda x, _: f"{100 * (1 - 1 / x):.{max(0, round(math.log10(x)) - 2)}f}%"))
    axes.xaxis.set_minor_locator(FixedLocator([]))
    axes.set_xlim(1.0, top)
    if not linear_y:
        # One chart often holds an inline echo (µs) and a pooled entry's tail (ms).
        axes.set_yscale("log")
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (µs)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path, help=".hlog files or directories of them")
    parser.add_argument("--tags", action="append", metavar="GLOB",
                        help="only tags matching this glob (repeatable); default: every tag "
                             "with values in the table, the *.total and *.round_trip tags in "
                             "the plot")
    parser.add_argument("--png", type=Path, help="write the latency-by-percentile chart here")
    parser.add_argument("--json", type=Path, help="write the percentile table here")
    parser.add_argument("--title", default="Latency by percentile", help="the chart's title")
    parser.add_argument("--linear-y", action="store_true",
                        help="linear latency axis (default: logarithmic)")
    args = parser.parse_args(argv)

    files = log_files(args.logs)
    if not files:
        raise SystemExit("hdr_report: no .hlog files found")
    histograms = merge(files)
    # Without --tags, idle entries (every interval empty) would only pad the table.
    table_tags = [tag for tag in select(histograms, args.tags)
                  if args.tags or histograms[tag].get_total_count()]
    rows = {tag: summary(tag, histograms[tag]) for tag in table_tags}
    print(f"{len(files)} log file(s), {len(histograms)} tag(s)")
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"files": [str(f) for f in files], "tags": rows}, indent=2) + "\n")
    if args.png:
        plot(histograms, select(histograms, args.tags, DEFAULT_PLOT_SUFFIXES), args.png, args.title,
             args.linear_y)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
