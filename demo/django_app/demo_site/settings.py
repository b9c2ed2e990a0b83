"""Settings of the demo site: the smallest Django that serves the demo's JSON endpoints.

No sessions, no auth, no templates: the endpoints read the query string and answer JSON, so
every middleware would only add cost that the benchmark would then measure on both paths. The
database (PostgreSQL, for the `/db/*` endpoints) is the one `MOLT_PG_DSN` names, as for the
worker; without it the site has none and only the `/db/*` endpoints fail. Everything that
changes between runs comes from the environment:

| variable | meaning | default |
|---|---|---|
| `MOLT_WORKER_BIN` | the `molt_worker` binary a Django process spawns | `<repo>/target/release/molt_worker` |
| `MOLT_EXPORTS` | the exports manifest passed to the worker | `<repo>/molt_exports.json` |
| `MOLT_PG_DSN` | libpq key=value DSN of the demo's PostgreSQL (scripts/pgcluster.py sets it) | unset: no database |
| `MOLT_TRANSPORT` | `stdio` or `shm` | `stdio` |
| `MOLT_SOCKET` | attach to a running worker's control socket instead of spawning one | unset |
| `MOLT_TIMEOUT_MS` | per-call deadline | `2000` |
| `MOLT_BUSY_STATUS` | HTTP status for `Busy` (429 or 503) | `429` |
| `MOLT_DEMO_METRICS_PATH` | per-call metrics JSONL written by the client hooks | unset (off) |
| `DJANGO_DEBUG` | `1` turns DEBUG on (never for the benchmark) | off |
| `DJANGO_SECRET_KEY` | nothing here signs data; set it if you add something that does | random per process |
"""

import os
import secrets
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from demo_site.ring_sizes import MAX_FRAME_BYTES, WORKER_ARGS

BASE_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = BASE_DIR.parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(48)
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["molt_accel", "demoapp"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "demo_site.urls"
WSGI_APPLICATION = "demo_site.wsgi.application"
ASGI_APPLICATION = "demo_site.asgi.application"


def _database(dsn: str) -> dict[str, object]:
    parts = conninfo_to_dict(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.get("dbname", ""),
        "USER": parts.get("user", ""),
        "PASSWORD": parts.get("password", ""),
        "HOST": parts.get("host", ""),
        "PORT": parts.get("port", ""),
        # Persistent connections, checked before reuse, as a production site keeps them.
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
    }


_PG_DSN = os.environ.get("MOLT_PG_DSN")
DATABASES: dict[str, dict[str, object]] = {"default": _database(_PG_DSN)} if _PG_DSN else {}
TEMPLATES: list[dict[str, object]] = []
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False
APPEND_SLASH = False

MOLT_WORKER_BIN = os.environ.get("MOLT_WORKER_BIN") or str(REPO_ROOT / "target" / "release" / "molt_worker")
MOLT_EXPORTS = os.environ.get("MOLT_EXPORTS") or str(REPO_ROOT / "molt_exports.json")

MOLT_ACCEL = {
    # The client adds the transport's own flag (--stdio, or --socket for shm) when it spawns.
    # Rings and frames large enough for the 1,000,000-row table of /data/offload (ring_sizes.py,
    # which serve.py reads too).
    "WORKER_CMD": [MOLT_WORKER_BIN, *WORKER_ARGS],
    "MAX_FRAME_BYTES": MAX_FRAME_BYTES,
    "EXPORTS": MOLT_EXPORTS,
    "TRANSPORT": os.environ.get("MOLT_TRANSPORT", "stdio"),
    "SOCKET": os.environ.get("MOLT_SOCKET") or None,
    "TIMEOUT_MS": int(os.environ.get("MOLT_TIMEOUT_MS", "2000")),
    "BUSY_STATUS": int(os.environ.get("MOLT_BUSY_STATUS", "429")),
    "METRICS_PATH": os.environ.get("MOLT_DEMO_METRICS_PATH") or None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": os.environ.get("DJANGO_LOG_LEVEL", "WARNING")},
}
