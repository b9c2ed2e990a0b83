"""`/healthz` is ready only when this Django process reaches its worker."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import Client, override_settings


@pytest.mark.usefixtures("transport")
def test_healthz_reports_the_workers_health() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.content)["status"] == "ok"


def test_healthz_is_503_when_the_worker_cannot_start() -> None:
    missing = {**settings.MOLT_ACCEL, "WORKER_CMD": ["/nonexistent/molt_worker"], "TRANSPORT": "stdio"}
    with override_settings(MOLT_ACCEL=missing):
        response = Client().get("/healthz")
    assert response.status_code == 503
    assert json.loads(response.content)["error"]["code"] == "WorkerUnavailable"
    assert "/nonexistent" not in response.content.decode()
