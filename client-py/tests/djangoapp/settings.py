"""A minimal Django project for the decorator tests: no database, one app (molt_accel: its checks and commands), the test worker."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

SECRET_KEY = "molt-accel-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "djangoapp.urls"
INSTALLED_APPS = ["molt_accel"]
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

MOLT_ACCEL = {
    "WORKER_CMD": [os.environ.get("MOLT_WORKER_BIN") or str(REPO / "target" / "debug" / "molt_worker_test")],
    "EXPORTS": str(REPO / "molt_exports.test.json"),
    "TIMEOUT_MS": 5000,
}
