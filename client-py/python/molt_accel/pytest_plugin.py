"""The pytest plugin of :mod:`molt_accel.testing` (entry point ``pytest11``): the fixtures
``molt_worker`` (the real worker, once per session) and ``molt_attached`` (``MOLT_ACCEL``
attached to it for one test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .testing import WorkerProcess

__all__ = ["molt_worker", "molt_attached"]


@pytest.fixture(scope="session")
def molt_worker() -> Iterator[WorkerProcess]:
    """The real worker, started once per session from ``MOLT_ACCEL``."""
    with WorkerProcess() as worker:
        yield worker


@pytest.fixture
def molt_attached(molt_worker: WorkerProcess) -> Iterator[WorkerProcess]:
    """``MOLT_ACCEL`` attached to the session's worker for one test."""
    from django.test import override_settings

    with override_settings(MOLT_ACCEL=molt_worker.settings()):
        yield molt_worker
