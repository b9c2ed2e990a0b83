"""Runs the demo app in-process with Django's test clients against the real `molt_worker`.

The worker binary comes from `MOLT_WORKER_BIN` (default `<repo>/target/debug/molt_worker_test`,
what `cargo build` makes); the settings module reads it, so it is set before Django starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DJANGO_APP_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = DJANGO_APP_DIR.parents[1]

os.environ.setdefault("MOLT_WORKER_BIN", str(REPO_ROOT / "target" / "debug" / "molt_worker_test"))
os.environ["DJANGO_SETTINGS_MODULE"] = "demo_site.settings"
# The tests read bodies, not metrics; a developer's metrics file must not collect test calls.
os.environ.pop("MOLT_DEMO_METRICS_PATH", None)
# Cost knobs would only slow the CPython side down; the contract's answers do not depend on them.
for knob in ("MOLT_FAKE_DB_DELAY_MS", "MOLT_FAKE_DB_DECODE_US_PER_ROW", "MOLT_FAKE_DB_CPU_ITERS"):
    os.environ.pop(knob, None)
if str(DJANGO_APP_DIR) not in sys.path:
    sys.path.insert(0, str(DJANGO_APP_DIR))

import django  # noqa: E402

django.setup()

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from django.conf import settings  # noqa: E402
from django.test import override_settings  # noqa: E402


def _available_transports() -> list[str]:
    """Both transports, always: a build that lost one must fail here, not skip it quietly."""
    worker_bin = os.environ["MOLT_WORKER_BIN"]
    if not Path(worker_bin).exists():
        raise RuntimeError(f"{worker_bin} does not exist: build the worker first (make build)")
    return ["stdio", "shm"]


@pytest.fixture(params=_available_transports())
def transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs the test once per transport; the decorator's per-process clients are replaced
    when the setting changes, so each run starts its own worker."""
    with override_settings(MOLT_ACCEL={**settings.MOLT_ACCEL, "TRANSPORT": request.param, "STRICT_SHM": True}):
        yield request.param
