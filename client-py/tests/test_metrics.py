"""Client-side histograms: every reply is counted, the interval log parses with the
``hdrhistogram`` package's reader, the Prometheus text with ``prometheus_client``'s parser.
No timing assertions: only counts."""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
from prometheus_client.parser import text_string_to_metric_families

from molt_client_support import MakeClient, in_forked_child, stop_process, wait_until
from molt_accel import InvalidInput, Timeout
from molt_accel._metrics import ClientMetrics, label_worker_texts, prometheus_text


def log_counts(path: Path) -> dict[str, int]:
    """Total count per tag over every interval of an interval log."""
    reader = HistogramLogReader(str(path), HdrHistogram(1, 2, 3))
    counts: dict[str, int] = {}
    while (histogram := reader.get_next_interval_histogram()) is not None:
        tag = histogram.get_tag()
        counts[tag] = counts.get(tag, 0) + histogram.get_total_count()
    return counts


def test_metrics_are_off_unless_asked_for(make_client: MakeClient) -> None:
    assert make_client().metrics is None


def test_every_reply_is_counted_in_every_series_it_has(make_client: MakeClient, transport: str) -> None:
    client = make_client(metrics=True)
    for i in range(150):
        assert client.call("echo", {"i": i}) == {"i": i}
    for _ in range(7):
        with pytest.raises(InvalidInput):
            client.call("list_items", {"user_id": "not a number"})
    assert client.metrics is not None and client.metrics.transport == transport
    counts = client.metrics.counts()
    assert counts["echo"] == {"replies": 150, "round_trip": 150, "encode": 150, "decode": 150}
    # An error reply has no payload to decode.
    assert counts["list_items"] == {"replies": 7, "round_trip": 7, "encode": 7, "decode": 0}


def test_a_late_reply_is_counted_with_its_round_trip_only(make_client: MakeClient) -> None:
    client = make_client(metrics=True)
    client.start()
    stop_process(client.worker_pid)  # type: ignore[arg-type]
    with pytest.raises(Timeout):
        client.call("echo", "late", timeout_ms=100)
    os.kill(client.worker_pid, signal.SIGCONT)  # type: ignore[arg-type]
    wait_until(lambda: client.in_flight == 0, "the late reply arrives")
    assert client.metrics is not None
    assert client.metrics.counts()["echo"] == {"replies": 1, "round_trip": 1, "encode": 0, "decode": 0}


def test_a_forked_child_starts_with_empty_histograms(make_client: MakeClient) -> None:
    client = make_client(metrics=True)
    client.call("echo", "parent")

    def child_side() -> bool:
        assert client.metrics is not None
        empty = client.metrics.counts() == {}
        # This call starts the child's own worker, and a start counts against the call's
        # deadline: give it room on a loaded machine.
        client.call("echo", "child", timeout_ms=10_000)
        counted = client.metrics.counts()["echo"]["round_trip"] == 1
        client.close()
        return empty and counted

    assert in_forked_child(child_side)
    assert client.metrics is not None
    assert client.metrics.counts()["echo"]["round_trip"] == 1


def test_calls_from_threads_and_tasks_are_all_counted(make_client: MakeClient) -> None:
    client = make_client(metrics=True)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.call("echo", i), range(400)))

    async def many() -> None:
        await asyncio.gather(*(client.acall("echo", i) for i in range(60)))

    asyncio.run(many())
    assert client.metrics is not None
    assert client.metrics.counts()["echo"]["round_trip"] == 460


def test_the_log_written_at_close_counts_every_call(make_client: MakeClient, transport: str, tmp_path: Path) -> None:
    client = make_client(metrics_dir=str(tmp_path), metrics_interval_s=3600)
    for i in range(120):
        client.call("echo", i)
    client.close()
    (log,) = tmp_path.iterdir()
    assert log.name.startswith("molt_client-") and log.name.endswith(f"-{transport}.hlog")
    counts = log_counts(log)
    assert counts[f"echo.{transport}.round_trip"] == 120
    assert counts[f"echo.{transport}.encode"] == 120
    assert counts[f"echo.{transport}.decode"] == 120


def test_intervals_are_logged_while_the_client_runs(make_client: MakeClient, transport: str, tmp_path: Path) -> None:
    client = make_client(metrics_dir=str(tmp_path), metrics_interval_s=0.2)
    for i in range(30):
        client.call("echo", i)

    def logged() -> int:
        logs = list(tmp_path.iterdir())
        return log_counts(logs[0]).get(f"echo.{transport}.round_trip", 0) if logs else 0

    wait_until(lambda: logged() == 30, "an interval with every call is logged")
    client.call("echo", 0)
    client.close()
    assert logged() == 31


def test_prometheus_text_parses_and_carries_the_counts(make_client: MakeClient, transport: str) -> None:
    client = make_client(metrics=True)
    for i in range(40):
        client.call("echo", i)
    assert client.metrics is not None
    text = prometheus_text([client.metrics])
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    labels = (("entry", "echo"), ("transport", transport))
    assert samples[("molt_client_replies_total", tuple(sorted((*labels, ("status", "Ok")))))] == 40
    for series in ("round_trip", "encode", "decode"):
        assert samples[(f"molt_client_{series}_seconds_count", labels)] == 40
        assert samples[(f"molt_client_{series}_seconds_bucket", tuple(sorted((*labels, ("le", "+Inf")))))] == 40


def test_buckets_are_cumulative_and_never_hold_a_value_above_their_bound() -> None:
    metrics = ClientMetrics("stdio")
    # 2_500 shares its 2 ns histogram bucket with 2_501, so both count as above 2.5 µs.
    for round_trip_ns in (900, 2_000, 2_500, 2_501, 70_000_000_000):
        metrics.record("echo", "Ok", round_trip_ns=round_trip_ns, encode_ns=None, decode_ns=None)
    text = prometheus_text([metrics])
    metrics.close()
    bucket = {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "molt_client_round_trip_seconds_bucket"
    }
    assert bucket[1e-6] == 1
    assert bucket[2.5e-6] == 2
    assert bucket[5e-6] == 4
    assert bucket[60.0] == 4  # 70 s is above the last bound
    assert bucket[float("inf")] == 5


def test_worker_texts_from_several_transports_merge_into_one_valid_exposition() -> None:
    worker_text = (
        "# HELP molt_worker_replies_total Replies.\n# TYPE molt_worker_replies_total counter\n"
        'molt_worker_replies_total{entry="echo",status="Ok"} 3\n'
        "# HELP molt_worker_admission_queue_depth Depth.\n# TYPE molt_worker_admission_queue_depth gauge\n"
        "molt_worker_admission_queue_depth 2\n"
    )
    merged = label_worker_texts({"stdio": worker_text, "shm": worker_text}, {"other": "Busy: full"})
    families = {family.name: family for family in text_string_to_metric_families(merged)}
    replies = families["molt_worker_replies"].samples
    assert sorted(sample.labels["transport"] for sample in replies) == ["shm", "stdio"]
    assert all(sample.value == 3 and sample.labels["entry"] == "echo" for sample in replies)
    assert {s.labels["transport"]: s.value for s in families["molt_worker_admission_queue_depth"].samples} == {
        "stdio": 2,
        "shm": 2,
    }
    assert {s.labels["transport"]: s.value for s in families["molt_worker_scrape_ok"].samples} == {
        "stdio": 1,
        "shm": 1,
        "other": 0,
    }
    assert merged.count("# TYPE molt_worker_replies_total counter") == 1
    assert "# molt worker (other) metrics unavailable: Busy: full" in merged
