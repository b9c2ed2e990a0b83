"""The worker's metrics read with the tools an operator would use: the `.hlog` files with the
`hdrhistogram` package's HistogramLogReader and with bench/scripts/hdr_report.py, the
Prometheus text (over --metrics-listen and through the `__metrics__` entry) with
prometheus_client's parser.

Like test_stdio_protocol.py this speaks protocol v1 through stdio_worker.py's own codec, so the
worker is checked against docs/protocol.md rather than against the molt_accel client.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
from prometheus_client.parser import text_string_to_metric_families

from stdio_worker import HANG_BOUND_S, INVALID_INPUT, JSON, MSGPACK, OK, RAW, REPO, StartWorker

SERIES = ("queue", "exec", "total", "queue_depth")


def read_hlog(path: Path) -> tuple[Counter[str], int]:
    """Total count per tag over every interval in the log, and the number of intervals."""
    reader = HistogramLogReader(str(path), HdrHistogram(1, 2, 3))
    counts: Counter[str] = Counter()
    lines = 0
    while (histogram := reader.get_next_interval_histogram()) is not None:
        counts[histogram.get_tag()] += histogram.get_total_count()
        lines += 1
    return counts, lines


def only_log(directory: Path) -> Path:
    files = list(directory.iterdir())
    assert len(files) == 1 and files[0].name.startswith("molt_worker-") and files[0].suffix == ".hlog"
    return files[0]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def test_hlog_counts_equal_the_calls_made(workers: StartWorker, tmp_path: Path) -> None:
    worker = workers("--metrics-dir", str(tmp_path), "--metrics-interval", "3600", rust_log="info")
    worker.echo_calls(500)
    for user_id in range(1, 31):
        assert worker.request("list_items", JSON, b'{"user_id": %d}' % user_id).status == OK
    assert worker.finish().code == 0

    counts, _ = read_hlog(only_log(tmp_path))
    for series in SERIES:
        assert counts[f"echo.{series}"] == 500
        assert counts[f"list_items.{series}"] == 30
        assert counts[f"compute.{series}"] == 0


def test_sigusr1_dumps_an_interval_the_reader_can_parse(workers: StartWorker, tmp_path: Path) -> None:
    worker = workers("--metrics-dir", str(tmp_path), "--metrics-interval", "3600", rust_log="info")
    worker.stderr_line("ready")
    worker.echo_calls(64)
    worker.proc.send_signal(signal.SIGUSR1)
    log = only_log(tmp_path)
    deadline = time.monotonic() + HANG_BOUND_S
    while read_hlog(log)[0]["echo.total"] != 64:
        assert time.monotonic() < deadline, "no interval after SIGUSR1"
        time.sleep(0.01)
    assert worker.proc.poll() is None
    worker.echo_calls(6)
    assert worker.finish().code == 0
    counts, intervals = read_hlog(log)
    assert counts["echo.total"] == 70
    assert intervals == 2 * len(counts)


def test_metrics_listen_serves_text_prometheus_client_parses(workers: StartWorker) -> None:
    worker = workers("--metrics-listen", "127.0.0.1:0", rust_log="info")
    url = worker.stderr_line("serving GET /metrics on ").rsplit(" on ", 1)[1].strip() + "/metrics"
    worker.echo_calls(25)
    with urllib.request.urlopen(url, timeout=HANG_BOUND_S) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    found = samples(text)
    assert found[("molt_worker_replies_total", labels(entry="echo", status="Ok"))] == 25
    assert found[("molt_worker_total_seconds_count", labels(entry="echo"))] == 25
    assert found[("molt_worker_total_seconds_bucket", labels(entry="echo", le="+Inf"))] == 25
    assert found[("molt_worker_admission_queue_capacity", labels())] == 64
    assert worker.finish().code == 0


def test_metrics_entry_returns_the_same_text_over_the_protocol(workers: StartWorker) -> None:
    worker = workers()
    worker.echo_calls(11)
    reply = worker.request("__metrics__", RAW)
    assert (reply.status, reply.codec) == (OK, RAW)
    payload = reply.payload
    found = samples(payload.decode())
    assert found[("molt_worker_replies_total", labels(entry="echo", status="Ok"))] == 11
    assert found[("molt_worker_exec_seconds_count", labels(entry="echo"))] == 11
    kinds = {family.name: family.type for family in text_string_to_metric_families(payload.decode())}
    assert kinds["molt_worker_replies"] == "counter"
    assert kinds["molt_worker_total_seconds"] == "histogram"
    assert kinds["molt_worker_admission_queue_depth"] == "gauge"
    assert worker.request("__metrics__", MSGPACK).status == INVALID_INPUT
    assert worker.finish().code == 0


def test_hdr_report_merges_the_worker_logs_into_tables_and_a_chart(workers: StartWorker, tmp_path: Path) -> None:
    """bench/scripts/hdr_report.py, as the benchmark runner uses it, on two real worker runs."""
    spec = importlib.util.spec_from_file_location("hdr_report", REPO / "bench" / "scripts" / "hdr_report.py")
    assert spec is not None and spec.loader is not None
    hdr_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hdr_report)

    logs = tmp_path / "logs"
    for calls in (40, 60):
        worker = workers("--metrics-dir", str(logs), "--metrics-interval", "3600", rust_log="info")
        worker.echo_calls(calls)
        assert worker.finish().code == 0
    assert len(list(logs.iterdir())) == 2

    table, chart = tmp_path / "percentiles.json", tmp_path / "latency.png"
    assert hdr_report.main([str(logs), "--json", str(table), "--png", str(chart)]) == 0
    rows = json.loads(table.read_text())["tags"]
    assert rows["echo.total"]["count"] == 100
    assert rows["echo.total"]["unit"] == "us"
    assert rows["echo.queue_depth"]["unit"] == "calls"
    assert rows["echo.total"]["p50"] <= rows["echo.total"]["p99"] <= rows["echo.total"]["max"]
    assert "compute.total" not in rows, "idle entries are left out of the table"
    assert chart.read_bytes().startswith(b"\x89PNG")

    only = tmp_path / "only.json"
    hdr_report.main([str(logs), "--tags", "compute.*", "--json", str(only)])
    assert json.loads(only.read_text())["tags"]["compute.total"] == {"count": 0, "unit": "us"}
