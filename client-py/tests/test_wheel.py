"""The client as a user installs it: the wheel (maturin, with the native module) into a fresh
venv with no Rust toolchain on PATH, and the sdist (built there with one); each imports
molt_accel and calls the real worker over shared memory and over stdio."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from molt_client_support import REPO, WORKER_BIN

CLIENT_DIR = REPO / "client-py"
#: Where the system's own tools live, and no cargo, rustc or maturin.
NO_RUST_PATH = "/usr/local/bin:/usr/bin:/bin"
BUILD_TIMEOUT_S = 600
# Builds and pip installs: bounded by BUILD_TIMEOUT_S each, not by the suite's 60 s default.
pytestmark = pytest.mark.timeout(3 * BUILD_TIMEOUT_S)

CALL_THE_WORKER = """
import sys
import molt_accel, molt_accel._native
from molt_accel import MoltClient
venv, worker = sys.argv[1:]
assert molt_accel.__file__.startswith(venv), molt_accel.__file__
for transport in ("shm", "stdio"):
    options = {"strict_shm": True} if transport == "shm" else {}
    with MoltClient(worker_cmd=[worker], transport=transport, **options) as client:
        assert client.call("echo", {"x": [1, 2]}) == {"x": [1, 2]}, transport
print("ok", molt_accel.__version__)
"""

def _run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, **options)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done  # type: ignore[no-any-return]


def _maturin(*args: str, out: Path) -> Path:
    maturin = Path(sys.executable).parent / "maturin"
    env = {**os.environ, "CARGO_TARGET_DIR": str(REPO / "target")}
    _run([str(maturin), *args, "--out", str(out)], cwd=CLIENT_DIR, env=env)
    [built] = out.iterdir()
    return built


def _fresh_venv(path: Path) -> Path:
    # From the base interpreter, not this venv: nothing of .venv is visible in the new one.
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(path)])
    return path


def _install_and_call(venv: Path, target: Path, path_env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MOLT_WORKER_BIN")}
    env = {**clean, "PATH": f"{venv / 'bin'}:{path_env}", "CARGO_TARGET_DIR": str(REPO / "target")}
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(target)], env=env)
    called = _run([str(venv / "bin" / "python"), "-c", CALL_THE_WORKER, str(venv), str(WORKER_BIN)], env=env, cwd=venv)
    return called.stdout.strip()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _maturin("build", "--interpreter", sys.executable, out=tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_the_native_module_the_app_and_the_plugin(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "molt_accel/_native/__init__.py",
        "molt_accel/py.typed",
        "molt_accel/apps.py",
        "molt_accel/checks.py",
        "molt_accel/testing.py",
        "molt_accel/management/commands/molt_worker.py",
        "molt_accel/management/commands/molt_status.py",
    ):
        assert needed in names
    assert any(name.startswith("molt_accel/_native/") and name.endswith(".so") for name in names)
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    lines = zipfile.ZipFile(wheel).read(entry_points).decode().replace(" ", "").splitlines()
    assert lines[lines.index("[pytest11]") + 1] == "molt_accel=molt_accel.pytest_plugin"


def test_the_wheel_installs_and_calls_the_worker_without_rust(wheel: Path, tmp_path: Path) -> None:
    venv = _fresh_venv(tmp_path / "venv")
    assert _install_and_call(venv, wheel, NO_RUST_PATH) == "ok 0.1.0"


def test_the_sdist_builds_with_rust_installs_and_calls_the_worker(tmp_path: Path) -> None:
    sdist = _maturin("sdist", out=tmp_path / "sdist")
    venv = _fresh_venv(tmp_path / "venv")
    assert _install_and_call(venv, sdist, os.environ["PATH"]) == "ok 0.1.0"
