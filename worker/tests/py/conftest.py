"""Fixtures of the worker's Python suites: workers on pipes (stdio_worker.StdioWorker), each
killed at the end of the test that started it if it is still running."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stdio_worker import StartWorker, StdioWorker


@pytest.fixture
def workers() -> Iterator[StartWorker]:
    """Starts a worker with the given arguments (``StdioWorker``'s) each time it is called."""
    started: list[StdioWorker] = []

    def start(*args: str, **options: Any) -> StdioWorker:
        worker = StdioWorker(*args, **options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


@pytest.fixture
def worker(workers: StartWorker) -> StdioWorker:
    """One worker with the test manifest and default options."""
    return workers()
