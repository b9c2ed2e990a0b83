"""Fixtures of the reliability suites (chaos, overload, security) against the real worker."""

from __future__ import annotations

import os

import pytest

from reliability_support import WORKER_BIN

# The transports every chaos and security test runs against (each test passes strict_shm, so
# "shm" never quietly falls back to stdio).
TRANSPORTS = ["stdio", "shm"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def worker_bin() -> str:
    if not WORKER_BIN.is_file():
        pytest.fail(f"molt_worker not built at {WORKER_BIN}: run `make build` or set MOLT_WORKER_BIN")
    return str(WORKER_BIN)


@pytest.fixture(scope="session")
def chaos_cycles() -> int:
    """Kill cycles per chaos test: 50 in `make test`, MOLT_CHAOS_CYCLES (1000 in `make chaos`)."""
    return int(os.environ.get("MOLT_CHAOS_CYCLES", "50"))
