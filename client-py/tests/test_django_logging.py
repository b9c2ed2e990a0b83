"""A failed @molt_offload call is a logging record with the worker's log fields."""

from __future__ import annotations

import logging
import os

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoapp.settings")
django.setup()

from django.test import Client, override_settings  # noqa: E402

from djangoapp import settings as test_project  # noqa: E402
from molt_accel.django import close_clients  # noqa: E402


def test_a_failed_call_is_logged_with_request_id_entry_and_status(caplog: pytest.LogCaptureFixture) -> None:
    with override_settings(ROOT_URLCONF="djangoapp.urls", MOLT_ACCEL=test_project.MOLT_ACCEL):
        with caplog.at_level(logging.INFO, logger="molt_accel"):
            assert Client().get("/sync/nope").status_code == 500
    close_clients()
    [record] = [r for r in caplog.records if r.name == "molt_accel" and r.getMessage().startswith("molt_offload")]
    assert record.levelno == logging.WARNING
    assert (record.entry, record.status) == ("nope", "NotFound")  # type: ignore[attr-defined]
    assert isinstance(record.request_id, int)  # type: ignore[attr-defined]
