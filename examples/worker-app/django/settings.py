"""The smallest Django project that serves the template's views, for its tests and to try it:

    WORKER_APP_BIN=target/debug/worker_app DJANGO_SETTINGS_MODULE=settings \\
        python -m django runserver --pythonpath examples/worker-app/django
"""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "worker-app-template-only")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "offload.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

MOLT_ACCEL = {
    # The worker embeds its manifest (molt_exports.json beside Cargo.toml), so no EXPORTS.
    "WORKER_CMD": [os.environ.get("WORKER_APP_BIN") or str(HERE.parents[2] / "target" / "debug" / "worker_app")],
    "TRANSPORT": os.environ.get("MOLT_TRANSPORT", "shm"),
    "TIMEOUT_MS": 2000,
}
