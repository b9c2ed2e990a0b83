"""molt_accel.django.metrics_view: both sides' Prometheus text, parsed as a scraper would."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoapp.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.test import RequestFactory, override_settings  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from molt_accel.django import close_clients, get_client, metrics_view  # noqa: E402


@pytest.fixture(autouse=True)
def client_metrics_on(transport: str) -> Iterator[None]:
    with override_settings(MOLT_ACCEL={**settings.MOLT_ACCEL, "TRANSPORT": transport, "METRICS": True}):
        yield
    close_clients()


def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = metrics_view(RequestFactory().get("/internal/metrics"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def test_the_view_serves_the_client_and_the_worker_side_of_every_call(transport: str) -> None:
    client = get_client()
    for i in range(33):
        assert client.call("echo", i) == i
    samples = scrape()
    assert samples[("molt_client_replies_total", labels(entry="echo", transport=transport, status="Ok"))] == 33
    assert samples[("molt_client_round_trip_seconds_count", labels(entry="echo", transport=transport))] == 33
    assert samples[("molt_worker_replies_total", labels(entry="echo", transport=transport, status="Ok"))] == 33
    assert samples[("molt_worker_total_seconds_count", labels(entry="echo", transport=transport))] == 33
    assert samples[("molt_worker_scrape_ok", labels(transport=transport))] == 1
    # The scrape itself went through the protocol, and the next scrape counts it.
    assert scrape()[("molt_worker_replies_total", labels(entry="__metrics__", transport=transport, status="Ok"))] == 1


def test_a_scrape_before_any_call_is_valid_and_starts_no_worker() -> None:
    samples = scrape()
    assert not any(name.startswith(("molt_worker_", "molt_client_")) for name, _ in samples)


def test_only_get_and_head_are_allowed() -> None:
    assert metrics_view(RequestFactory().post("/internal/metrics")).status_code == 405


def test_metrics_dir_in_the_settings_writes_the_client_log(transport: str, tmp_path: Path) -> None:
    with override_settings(MOLT_ACCEL={**settings.MOLT_ACCEL, "TRANSPORT": transport, "METRICS_DIR": str(tmp_path)}):
        client = get_client()
        for i in range(5):
            client.call("echo", i)
        close_clients()
    (log,) = tmp_path.iterdir()
    assert log.read_text().count(f"Tag=echo.{transport}.round_trip,") == 1
