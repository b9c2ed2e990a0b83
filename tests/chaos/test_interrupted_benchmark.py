"""The demo benchmark ended by a signal (a `timeout make demo`, a CI limit, a closed terminal)
stops every process it started (gunicorn, uvicorn, their Django processes, the molt workers)
before it exits: none is left behind as an orphan.

The runner is the real one (`bench/scripts/run_demo_bench.py`) serving the real demo; only the
load tool is a stand-in that waits, so the signal arrives while the servers are up and a load
step is running, as it would in the middle of a `make demo`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reliability_support import REPO, command_name, descendants, kill_quietly, process_state, start_ticks, wait_until

RUNNER = REPO / "bench" / "scripts" / "run_demo_bench.py"
SCRATCH_DIRS = REPO / "bench" / "results"
# Starting gunicorn, uvicorn and a worker on a loaded 2-core machine.
SERVING_BOUND_S = 90.0
# DemoServer.stop: SIGTERM, up to its 5 s grace, then SIGKILL; twice over for the margin.
STOP_BOUND_S = 30.0

STAND_IN_LOAD_TOOL = f"""#!{sys.executable}
import sys, time
if sys.argv[1:] == ["--version"]:
    print("oha 0.0.0 (a test's stand-in)")
    sys.exit(0)
time.sleep(600)
"""


def _is_load_step(pid: int) -> bool:
    """Whether ``pid`` is the load tool running a step (not telling its version)."""
    try:
        return b"--urls-from-file" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False


def _alive(process: tuple[int, int | None]) -> bool:
    pid, ticks = process
    return start_ticks(pid) == ticks and process_state(pid) not in (None, "Z")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_benchmark_ended_by_a_signal_stops_every_process_it_started(
    transport: str, worker_bin: str, signum: signal.Signals, tmp_path: Path
) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "oha").write_text(STAND_IN_LOAD_TOOL)
    (tools / "oha").chmod(0o755)
    scratch_before = set(SCRATCH_DIRS.glob("_tmp*"))
    started: list[tuple[int, int | None]] = []
    runner = subprocess.Popen(
        [
            sys.executable, str(RUNNER), "--transport", transport, "--load-tool", "oha", "--workers", "1",
            "--worker-bin", worker_bin, "--out", str(tmp_path / "result"), "--no-cancel-check",
            "--port", str(20000 + os.getpid() % 20000),
        ],
        env={**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # A load step runs once both servers answered /healthz through a worker.
        serving = wait_until(lambda: any(_is_load_step(pid) for pid in descendants(runner.pid)), SERVING_BOUND_S, 0.1)
        assert serving, "the benchmark did not reach its first load step"
        started = [(pid, start_ticks(pid)) for pid in descendants(runner.pid)]
        # /proc's comm holds 15 bytes of the name.
        assert Path(worker_bin).name[:15] in {command_name(pid) for pid, _ in started}
        runner.send_signal(signum)
        _, stderr = runner.communicate(timeout=STOP_BOUND_S)
        left = [(pid, command_name(pid)) for pid, ticks in started if _alive((pid, ticks))]
    finally:
        if runner.poll() is None:
            started = started or [(pid, start_ticks(pid)) for pid in descendants(runner.pid)]
            runner.kill()
            runner.wait()
        # Whatever the run left behind must not outlive the test (after `left` was taken).
        for pid, ticks in started:
            if _alive((pid, ticks)):
                kill_quietly(pid)
        for scratch in set(SCRATCH_DIRS.glob("_tmp*")) - scratch_before:
            shutil.rmtree(scratch, ignore_errors=True)
    assert runner.returncode == 1, stderr.decode(errors="replace")[-2000:]
    assert f"benchmark stopped ({signum.name})" in stderr.decode(errors="replace")
    assert not left, f"left running after the benchmark exited: {left}"
