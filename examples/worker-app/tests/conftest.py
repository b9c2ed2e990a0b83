"""The template tested as its users run it: the real `worker_app` binary (built by `make
build`, or `cargo build --manifest-path examples/worker-app/Cargo.toml --target-dir target`),
called through molt_accel over both transports, and the template's Django views."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

DJANGO_DIR = Path(__file__).resolve().parents[1] / "django"
sys.path.insert(0, str(DJANGO_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django  # noqa: E402

django.setup()

from molt_accel import MoltClient  # noqa: E402

import settings as template_settings  # noqa: E402

WORKER_CMD: list[str] = template_settings.MOLT_ACCEL["WORKER_CMD"]  # type: ignore[assignment]


@pytest.fixture(params=["stdio", "shm"])
def transport(request: pytest.FixtureRequest) -> str:
    if not Path(WORKER_CMD[0]).is_file():
        pytest.fail(f"worker_app not built at {WORKER_CMD[0]}: run `make build`")
    return str(request.param)


@pytest.fixture
def client(transport: str) -> Iterator[MoltClient]:
    with MoltClient(worker_cmd=WORKER_CMD, transport=transport, strict_shm=True, timeout_ms=5000) as client:
        yield client
