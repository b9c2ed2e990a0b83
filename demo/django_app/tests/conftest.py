"""Runs the demo app in-process with Django's test clients against the real `molt_worker`
and a real PostgreSQL.

The worker binary comes from `MOLT_WORKER_BIN` (default `<repo>/target/debug/molt_worker_test`,
what `cargo build` makes); the settings module reads it, so it is set before Django starts.
The database is a fresh `molt_demo_test` in the cluster `MOLT_PG_DSN` names (`make test-python`
starts one with scripts/pgcluster.py), migrated and seeded with `SEED_ROWS` items; the
workers the tests start inherit the DSN, so both sides read the same rows.
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

import psycopg  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

TEST_DATABASE = "molt_demo_test"
#: Five users of 6,000 items each: a page of 5,000 has a next page.
SEED_ROWS, SEED_USERS = 30_000, 5


def _fresh_test_database() -> str:
    """The DSN of a new, empty `molt_demo_test` in the cluster `MOLT_PG_DSN` names."""
    dsn = os.environ.get("MOLT_PG_DSN")
    if not dsn:
        raise RuntimeError("MOLT_PG_DSN is not set: run under scripts/pgcluster.py (make test-python does)")
    if conninfo_to_dict(dsn).get("dbname") == TEST_DATABASE:
        dsn = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {TEST_DATABASE}")
    return make_conninfo(dsn, dbname=TEST_DATABASE)


os.environ["MOLT_PG_DSN"] = _fresh_test_database()

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0)
call_command("seed_items", rows=SEED_ROWS, users=SEED_USERS, verbosity=0)

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
