"""Client-side latency histograms: round-trip, encode and decode time per entry and transport.

A :class:`ClientMetrics` belongs to one :class:`~molt_accel.MoltClient` (so to one transport)
and sees every reply the client gets, from the same place the ``after_recv`` hooks are run.
It keeps HDR histograms (``hdrhistogram`` package; nanoseconds, 3 significant digits, the
worker's settings) and:

- with ``metrics_dir``, appends an interval to its own HdrHistogram interval log every
  ``metrics_interval_s`` seconds and once more at :meth:`close`, in the worker's format: tags
  ``entry.transport.round_trip`` / ``.encode`` / ``.decode``, one file per client and process
  (``molt_client-<UTC start>-<pid>-<transport>.hlog``); ``bench/scripts/hdr_report.py``
  reads both sides' logs together;
- renders the Prometheus text of the client side (:func:`prometheus_text`), which
  ``molt_accel.django.metrics_view`` serves beside the worker's own.

Recording must not slow the call it measures, and ``HdrHistogram.record_value`` costs about
2 µs in pure Python, three times per call. So a reply only appends one tuple to a deque
(thread-safe, no lock, a fraction of a microsecond); a daemon thread folds the deque into the
histograms every second, after bucketing values to the histograms' own resolution so each
distinct bucket is recorded once per fold. Scrapes and dumps fold first, so they see every
reply made before them.

>>> metrics = ClientMetrics("stdio")
>>> metrics.record("echo", "Ok", round_trip_ns=25_000, encode_ns=1_500, decode_ns=900)
>>> 'molt_client_replies_total{entry="echo",transport="stdio",status="Ok"} 1' in prometheus_text([metrics])
True
>>> metrics.close()
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hdrh.histogram import HdrHistogram

__all__ = ["ClientMetrics", "prometheus_text", "label_worker_texts", "SERIES"]

#: The series kept per entry, in tag and exposition order.
SERIES = ("round_trip", "encode", "decode")
#: Significant decimal digits, as in the worker: values are exact to 0.1%.
SIGNIFICANT_DIGITS = 3
#: Largest value kept (one hour in ns); longer ones are recorded as one hour.
HIGHEST_TRACKABLE_NS = 3_600 * 1_000_000_000
#: Values below 2**11 (the histograms' sub-bucket count at 3 digits) are exact; above, a
#: bucket spans 2**(bit_length - 11): what :func:`_bucket` rounds down to.
_SUB_BUCKET_BITS = 11
#: How often pending replies are folded into the histograms.
FOLD_EVERY_S = 1.0
#: Latency bucket bounds of the exposition, in ns: the worker's (1 µs to 60 s, 1-2.5-5 steps).
LATENCY_BOUNDS_NS = (
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000, 100_000_000,
    250_000_000, 500_000_000, 1_000_000_000, 2_500_000_000, 5_000_000_000, 10_000_000_000,
    30_000_000_000, 60_000_000_000,
)
_HLOG_LEGEND = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n'

# Every live ClientMetrics, so a forked child can drop what it inherited. Weak: this must not
# keep a client's metrics alive.
_live: weakref.WeakSet[ClientMetrics] = weakref.WeakSet()


def _new_histogram() -> HdrHistogram:
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(1, HIGHEST_TRACKABLE_NS, SIGNIFICANT_DIGITS)


def _bucket(value: int) -> int:
    """The lowest value of ``value``'s histogram bucket: recording it instead of ``value``
    changes nothing in the histogram, and lets equal buckets be counted once."""
    value = min(max(value, 0), HIGHEST_TRACKABLE_NS)
    shift = value.bit_length() - _SUB_BUCKET_BITS
    return value if shift <= 0 else (value >> shift) << shift


@dataclass
class _EntrySeries:
    """One entry's histograms over some span of time, with exact sums and reply counts."""

    histograms: dict[str, HdrHistogram] = field(default_factory=lambda: {s: _new_histogram() for s in SERIES})
    sums_ns: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERIES, 0))
    replies: collections.Counter[str] = field(default_factory=collections.Counter)

    def reset(self) -> None:
        for histogram in self.histograms.values():
            histogram.reset()
        self.sums_ns = dict.fromkeys(SERIES, 0)
        self.replies.clear()


class ClientMetrics:
    """HDR histograms of one client's calls; see the module docstring.

    ``transport`` labels everything this instance records. Without ``metrics_dir`` nothing
    is written to disk; the histograms still feed :func:`prometheus_text`.
    """

    def __init__(self, transport: str, *, metrics_dir: str | os.PathLike[str] | None = None,
                 interval_s: float = 10.0) -> None:
        try:
            import hdrh.histogram  # noqa: F401  (fail at client creation, not on the first reply)
        except ImportError:
            raise ImportError("client metrics need the hdrhistogram package: pip install molt_accel[metrics]") from None
        if not interval_s > 0:
            raise ValueError("metrics_interval_s must be positive")
        self.transport = transport
        self.metrics_dir = Path(metrics_dir) if metrics_dir is not None else None
        self.interval_s = float(interval_s)
        # (entry, status, round_trip_ns, encode_ns | None, decode_ns | None), appended by callers.
        self._pending: collections.deque[tuple[str, str, int, int | None, int | None]] = collections.deque()
        # Guards everything below; never taken by callers recording a reply.
        self._lock = threading.Lock()
        self._since_start: dict[str, _EntrySeries] = {}
        self._since_dump: dict[str, _EntrySeries] = {}
        self._log_path: Path | None = None
        self._log_started_s = 0.0
        self._interval_started_s = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        _live.add(self)

    # -- recording (any thread) ----------------------------------------------------------------

    def record(self, entry: str, status: str, *, round_trip_ns: int, encode_ns: int | None,
               decode_ns: int | None) -> None:
        """One reply. ``encode_ns``/``decode_ns`` are None for a late reply to a call the
        client had given up on: only its round trip and status are known."""
        self._pending.append((entry, status, round_trip_ns, encode_ns, decode_ns))
        if self._thread is None:
            self._start_thread()

    # -- reading ---------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path | None:
        """This client's interval log, once the first interval has been written."""
        return self._log_path

    def counts(self) -> dict[str, dict[str, int]]:
        """Per entry: replies counted and values in each series' histogram since start."""
        with self._lock:
            self._fold()
            return {
                entry: {"replies": sum(kept.replies.values()),
                        **{series: kept.histograms[series].get_total_count() for series in SERIES}}
                for entry, kept in self._since_start.items()
            }

    def dump(self) -> None:
        """Folds and, with a ``metrics_dir``, appends an interval to the log now."""
        with self._lock:
            self._fold()
            if self.metrics_dir is not None:
                self._write_interval()

    def close(self) -> None:
        """Stops the fold thread and writes the last interval. Idempotent; recording after
        close still counts (for the exposition) but is no longer logged."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.dump()
        with self._lock:
            self.metrics_dir = None

    # -- internals --------------------------------------------------------------------------------

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="molt-accel-metrics", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        next_dump = time.monotonic() + self.interval_s
        while not self._stop.wait(min(FOLD_EVERY_S, self.interval_s)):
            if time.monotonic() >= next_dump:
                self.dump()
                next_dump = time.monotonic() + self.interval_s
            else:
                with self._lock:
                    self._fold()

    def _fold(self) -> None:
        """Moves the pending replies into the histograms. Holds ``_lock``."""
        keyed: collections.Counter[tuple[str, str, int]] = collections.Counter()
        sums: collections.Counter[tuple[str, str]] = collections.Counter()
        replies: collections.Counter[tuple[str, str]] = collections.Counter()
        pop = self._pending.popleft
        while True:
            try:
                entry, status, round_trip_ns, encode_ns, decode_ns = pop()
            except IndexError:
                break
            replies[entry, status] += 1
            for series, value in (("round_trip", round_trip_ns), ("encode", encode_ns), ("decode", decode_ns)):
                if value is not None:
                    keyed[entry, series, _bucket(value)] += 1
                    sums[entry, series] += value
        if not replies:
            return
        targets = [self._since_start]
        if self.metrics_dir is not None:
            targets.append(self._since_dump)
        for target in targets:
            for (entry, status), count in replies.items():
                target.setdefault(entry, _EntrySeries()).replies[status] += count
            for (entry, series, value), count in keyed.items():
                target[entry].histograms[series].record_value(value, count)
            for (entry, series), total in sums.items():
                target[entry].sums_ns[series] += total

    def _write_interval(self) -> None:
        """Appends one interval (every entry and series) to the log. Holds ``_lock``."""
        assert self.metrics_dir is not None
        now_s = time.time()
        if self._log_path is None:
            self._log_path = self._open_log(now_s)
        lines = []
        start = self._interval_started_s - self._log_started_s
        length = now_s - self._interval_started_s
        for entry in sorted(self._since_dump):
            series_of_entry = self._since_dump[entry]
            for series in SERIES:
                histogram = series_of_entry.histograms[series]
                tag = f"{entry}.{self.transport}.{series}"
                encoded = histogram.encode().decode("ascii")
                lines.append(f"Tag={tag},{start:.3f},{length:.3f},{histogram.get_max_value():.3f},{encoded}\n")
            series_of_entry.reset()
        self._interval_started_s = now_s
        if lines:
            # One write per interval: a reader tailing the log never sees half a line.
            with open(self._log_path, "a", encoding="ascii") as log:
                log.write("".join(lines))

    def _open_log(self, now_s: float) -> Path:
        assert self.metrics_dir is not None
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_s)) + f".{int(now_s * 1000) % 1000:03d}Z"
        path = self.metrics_dir / f"molt_client-{stamp}-{os.getpid()}-{self.transport}.hlog"
        from . import __version__

        header = (
            f"#[Logged with molt_accel {__version__}]\n"
            "#[Histogram log format version 1.3]\n"
            "#[Times in nanoseconds]\n"
            f"#[StartTime: {now_s:.3f} (seconds since epoch)]\n"
            f"#[BaseTime: {now_s:.3f} (seconds since epoch)]\n"
            + _HLOG_LEGEND
        )
        with open(path, "x", encoding="ascii") as log:
            log.write(header)
        self._log_started_s = self._interval_started_s = now_s
        return path

    def _forget_after_fork(self) -> None:
        """In a forked child: the fold thread is gone and the parent's replies are not ours."""
        self._lock = threading.Lock()
        self._pending.clear()
        self._since_start.clear()
        self._since_dump.clear()
        self._log_path = None
        self._thread = None
        self._stop = threading.Event()


def _forget_metrics_after_fork() -> None:
    for metrics in list(_live):
        metrics._forget_after_fork()


os.register_at_fork(after_in_child=_forget_metrics_after_fork)


# -- Prometheus text exposition ----------------------------------------------------------------


def prometheus_text(sources: Iterable[ClientMetrics]) -> str:
    """The exposition (format 0.0.4) of the client side of every call the ``sources`` saw:
    ``molt_client_replies_total{entry,transport,status}`` and one histogram per series
    (``molt_client_round_trip_seconds`` ...), buckets as the worker's (docs/operations.md)."""
    sources = list(sources)
    with contextlib.ExitStack() as held:
        # Held while rendering: the fold thread must not change a histogram being iterated.
        for source in sources:
            held.enter_context(source._lock)
            source._fold()
        return _render([(source.transport, source._since_start) for source in sources])


def _render(snapshots: list[tuple[str, dict[str, _EntrySeries]]]) -> str:
    out: list[str] = []
    _family(out, "molt_client_replies_total", "counter", "Replies the client received, by entry, transport and status.")
    for transport, entries in snapshots:
        for entry in sorted(entries):
            for status, count in sorted(entries[entry].replies.items()):
                out.append(_line("molt_client_replies_total", (("entry", entry), ("transport", transport), ("status", status)), count))
    helps = {
        "round_trip": "Time from sending a call to receiving its reply, as the caller saw it.",
        "encode": "Time spent encoding the payload and the call frame.",
        "decode": "Time spent decoding the reply payload.",
    }
    for series in SERIES:
        name = f"molt_client_{series}_seconds"
        _family(out, name, "histogram", helps[series])
        for transport, entries in snapshots:
            for entry in sorted(entries):
                labels = (("entry", entry), ("transport", transport))
                out.extend(_histogram_lines(name, labels, entries[entry].histograms[series],
                                            entries[entry].sums_ns[series]))
    return "".join(out)


def label_worker_texts(texts: Mapping[str, str], failures: Mapping[str, str]) -> str:
    """One exposition from the ``__metrics__`` texts of several workers, keyed by the
    transport that reached each: every sample gains a ``transport`` label and every family
    is written once, its samples together (the format requires it), plus
    ``molt_worker_scrape_ok{transport}`` (1, or 0 for each of ``failures``: transport to a
    reason, written as a comment)."""
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    comments: list[str] = []
    for transport, text in texts.items():
        family = ""
        label = f'transport="{_escape(transport)}"'
        for line in text.splitlines():
            if line.startswith(("# HELP ", "# TYPE ")):
                family = line.split(" ", 3)[2]
                headers.setdefault(family, [])
                if len(headers[family]) < 2:
                    headers[family].append(line + "\n")
            elif line.startswith("#"):
                comments.append(f"{line} ({label})\n")
            elif line.strip():
                name_end = min(i for i in (line.find("{"), line.find(" "), len(line)) if i >= 0)
                name, rest = line[:name_end], line[name_end:]
                labelled = f"{name}{{{label},{rest[1:]}" if rest.startswith("{") else f"{name}{{{label}}}{rest}"
                samples.setdefault(family, []).append(labelled + "\n")
    out: list[str] = []
    _family(out, "molt_worker_scrape_ok", "gauge", "1 if the worker reached by this transport answered __metrics__, else 0.")
    for transport in texts:
        out.append(_line("molt_worker_scrape_ok", (("transport", transport),), 1))
    for transport, reason in failures.items():
        out.append(_line("molt_worker_scrape_ok", (("transport", transport),), 0))
        comments.append(f"# molt worker ({transport}) metrics unavailable: {' '.join(reason.split())}\n")
    for family, lines in headers.items():
        out.extend(lines)
        out.extend(samples.get(family, ()))
    out.extend(comments)
    return "".join(out)


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _line(name: str, labels: tuple[tuple[str, str], ...], value: object) -> str:
    rendered = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
    return f"{name}{{{rendered}}} {value}\n" if labels else f"{name} {value}\n"


def _histogram_lines(name: str, labels: tuple[tuple[str, str], ...], histogram: HdrHistogram,
                     sum_ns: int) -> Iterator[str]:
    in_bucket = [0] * len(LATENCY_BOUNDS_NS)
    if histogram.get_total_count():
        for step in histogram.get_recorded_iterator():
            # Counted under the first bound at or above the highest value of its HDR bucket,
            # as the worker does: a sample under le="x" was at most x.
            highest = histogram.get_highest_equivalent_value(step.value_iterated_to)
            for index, bound in enumerate(LATENCY_BOUNDS_NS):
                if highest <= bound:
                    in_bucket[index] += step.count_at_value_iterated_to
                    break
    cumulative = 0
    for bound, count in zip(LATENCY_BOUNDS_NS, in_bucket):
        cumulative += count
        yield _line(f"{name}_bucket", (*labels, ("le", _seconds(bound))), cumulative)
    total = histogram.get_total_count()
    yield _line(f"{name}_bucket", (*labels, ("le", "+Inf")), total)
    yield _line(f"{name}_sum", labels, _seconds(sum_ns))
    yield _line(f"{name}_count", labels, total)


def _seconds(nanoseconds: int) -> str:
    """Exact decimal seconds, as the worker prints them (``0.0000025``, ``30``)."""
    return format(Decimal(nanoseconds).scaleb(-9).normalize(), "f")
