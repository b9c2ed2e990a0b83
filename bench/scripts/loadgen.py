"""Load tools the benchmark drives: oha by default, k6 when it is on PATH.

Both read the same file of URLs (one a line, made from a seeded list of parameters so that
neither side is flattered by repeating one request) and report the same `LoadResult`. oha
also POSTs JSON bodies read from a file, one a line, each request taking one at random (the
molt-web service's entries take their request as the body):
requests per second, latency percentiles, and a count of everything that was not a 2xx
answer, by HTTP status or by transport error.

Closed loop (`rate=None`): `concurrency` connections each send the next request when the
previous answer arrives; this measures capacity. Open loop (`rate=R`): requests are due at a
fixed rate whatever the server does. oha counts each latency from when the request was due
(`--latency-correction`), so a stalled server cannot hide its stall by slowing the load tool;
k6's arrival-rate executor keeps the rate and counts requests it could not start in time as
dropped iterations, but times each request from when it was actually sent.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_OHA = REPO_ROOT / ".tools" / "bin" / "oha"
K6_SCRIPTS = REPO_ROOT / "bench" / "k6"
# Percentiles every LoadResult carries (k6 is asked for the same list).
PERCENTILES = (10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99)


@dataclass
class LoadResult:
    """What one load step measured."""

    requests: int
    """Answers received (any status) plus transport errors."""
    duration_s: float
    rps: float
    """Answers received per second of the step."""
    latency_ms: dict[float, float | None]
    """Latency percentile -> milliseconds, over every answer received."""
    max_ms: float | None
    error_codes: dict[str, int] = field(default_factory=dict)
    """Non-2xx HTTP statuses by code, and transport errors by message."""

    @property
    def errors(self) -> int:
        return sum(self.error_codes.values())

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class LoadStep:
    """What one load step asks of the tool."""

    endpoint: str
    url_file: Path
    concurrency: int
    duration_s: float
    rate: float | None
    """Requests per second (open loop); None for a closed loop."""
    timeout_s: float | None
    post_bodies: Path | None = None
    """JSON bodies, one a line: POSTed to the URLs instead of GETs (oha only)."""


class LoadTool(ABC):
    """One way to drive load at the demo: a load tool's executable and how to run one step."""

    name: str
    version_args: tuple[str, ...]
    """Arguments that make the executable print its version."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.version = _tool_version([str(path), *self.version_args])

    def run(
        self,
        *,
        endpoint: str,
        url_file: Path,
        concurrency: int,
        duration_s: float,
        rate: float | None = None,
        timeout_s: float | None = None,
        post_bodies: Path | None = None,
    ) -> LoadResult:
        return self._run(LoadStep(endpoint, url_file, concurrency, duration_s, rate, timeout_s, post_bodies))

    @abstractmethod
    def _run(self, step: LoadStep) -> LoadResult: ...

    def _invoke(self, argv: list[str], step: LoadStep, env: dict[str, str] | None = None) -> str:
        """Runs the tool to the end of the step (plus a margin) and returns its stdout."""
        completed = subprocess.run(
            [str(self.path), *argv], capture_output=True, text=True, env=env, timeout=step.duration_s + 120, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(f"{self.name} failed ({completed.returncode}): {completed.stderr.strip()[:500]}")
        return completed.stdout


def _tool_version(argv: list[str]) -> str:
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return (completed.stdout or completed.stderr).strip().splitlines()[0] if completed.returncode == 0 else "unknown"


def _none_if_nan(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


class Oha(LoadTool):
    """oha with JSON output, no TUI, loopback URLs read from a file."""

    name = "oha"
    version_args = ("--version",)

    def _run(self, step: LoadStep) -> LoadResult:
        argv = [
            "--no-tui",
            "--output-format", "json",
            "--urls-from-file",
            "-c", str(step.concurrency),
            "-z", f"{step.duration_s}s",
            # Requests still in flight at the end are waited for, not counted as errors.
            "-w",
        ]
        if step.rate is not None:
            argv += ["-q", str(step.rate), "--latency-correction"]
        if step.timeout_s is not None:
            argv += ["-t", f"{step.timeout_s}s"]
        if step.post_bodies is not None:
            argv += ["-m", "POST", "-T", "application/json", "-Z", str(step.post_bodies)]
        argv.append(str(step.url_file))
        return self.parse(json.loads(self._invoke(argv, step)))

    @staticmethod
    def parse(report: dict[str, object]) -> LoadResult:
        """Reads oha's `--output-format json` report (times in seconds)."""
        summary = report["summary"]
        assert isinstance(summary, dict)
        statuses: dict[str, int] = report["statusCodeDistribution"]  # type: ignore[assignment]
        transport_errors: dict[str, int] = report["errorDistribution"]  # type: ignore[assignment]
        answers = sum(statuses.values())
        percentiles: dict[str, float | None] = report["latencyPercentiles"]  # type: ignore[assignment]
        latency_ms: dict[float, float | None] = {}
        for key, seconds in percentiles.items():
            value = _none_if_nan(seconds)
            latency_ms[float(key.removeprefix("p"))] = None if value is None else value * 1000.0
        error_codes = {code: count for code, count in statuses.items() if not code.startswith("2")}
        error_codes.update(transport_errors)
        duration_s = float(summary["total"])
        slowest = _none_if_nan(summary.get("slowest"))
        return LoadResult(
            requests=answers + sum(transport_errors.values()),
            duration_s=duration_s,
            rps=answers / duration_s if duration_s else 0.0,
            latency_ms=latency_ms,
            max_ms=None if slowest is None else slowest * 1000.0,
            error_codes=error_codes,
        )


class K6(LoadTool):
    """k6 with the scripts in bench/k6/, one per endpoint, reading the same URL file."""

    name = "k6"
    version_args = ("version",)

    def _run(self, step: LoadStep) -> LoadResult:
        if step.post_bodies is not None:
            raise NotImplementedError("the bench/k6 scripts send GETs only: use oha for POST steps")
        script = K6_SCRIPTS / f"{step.endpoint.strip('/').replace('/', '_')}.js"
        with tempfile.TemporaryDirectory(prefix="molt-k6-") as scratch:
            summary_path = Path(scratch) / "summary.json"
            env = dict(os.environ)
            env.update(
                {
                    "URLS_FILE": str(step.url_file),
                    "VUS": str(step.concurrency),
                    "DURATION": f"{step.duration_s}s",
                    "SUMMARY_PATH": str(summary_path),
                    "K6_NO_USAGE_REPORT": "true",
                }
            )
            if step.rate is not None:
                env["RATE"] = str(step.rate)
            if step.timeout_s is not None:
                env["TIMEOUT"] = f"{step.timeout_s}s"
            # k6 exits 99 when a threshold fails; the scripts set none, so any failure is real.
            self._invoke(["run", "--quiet", "--no-color", str(script)], step, env)
            if not summary_path.exists():
                raise RuntimeError("k6 exited 0 but wrote no summary")
            return self.parse(json.loads(summary_path.read_text()))

    @staticmethod
    def parse(summary: dict[str, object]) -> LoadResult:
        """Reads the summary the bench/k6 scripts write from `handleSummary` (times in ms)."""
        metrics: dict[str, dict[str, object]] = summary["metrics"]  # type: ignore[assignment]
        duration_values: dict[str, float] = metrics["http_req_duration"]["values"]  # type: ignore[assignment]
        latency_ms = {p: duration_values.get(f"p({p:g})") for p in PERCENTILES}
        answers = int(metrics["http_reqs"]["values"]["count"])  # type: ignore[index]
        duration_s = float(summary["state"]["testRunDurationMs"]) / 1000.0  # type: ignore[index]
        error_codes: dict[str, int] = {}
        status_counts = summary.get("status_counts", {})
        assert isinstance(status_counts, dict)
        for code, count in status_counts.items():
            if not str(code).startswith("2"):
                error_codes[str(code)] = int(count)
        return LoadResult(
            requests=answers,
            duration_s=duration_s,
            rps=answers / duration_s if duration_s else 0.0,
            latency_ms=latency_ms,
            max_ms=duration_values.get("max"),
            error_codes=error_codes,
        )


def find_load_tool(prefer: str | None = None) -> LoadTool:
    """k6 when it is on PATH (or asked for), else the project's oha (`make oha`)."""
    k6_path = shutil.which("k6")
    if prefer in (None, "k6") and k6_path is not None:
        return K6(Path(k6_path))
    if prefer == "k6":
        raise RuntimeError("k6 is not on PATH")
    oha_path = PROJECT_OHA if PROJECT_OHA.exists() else shutil.which("oha")
    if oha_path is None:
        raise RuntimeError("oha is missing: run make oha (make demo does)")
    return Oha(Path(oha_path))
