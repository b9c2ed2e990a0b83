"""The template's entries over a real worker: results, a bad field, and the async entry's
Timeout, Cancel and Busy, each proved on the side effect its future would have had."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from django.test import AsyncClient, Client, override_settings

from molt_accel import Busy, InvalidInput, MoltClient, Timeout
from molt_accel.django import close_clients

import settings as template_settings

#: Long enough that a reminder which was not dropped would be delivered within the test.
REMINDER_MS = 600
#: How long after a reminder was due its delivery would surely have been counted.
SETTLE_S = REMINDER_MS / 1000 + 0.6


def reminders_sent(client: MoltClient) -> int:
    stats = client.call("stats", {})
    assert isinstance(stats, dict)
    return int(stats["reminders_sent"])


def test_count_primes_answers_with_its_fields_in_order(client: MoltClient) -> None:
    assert client.call("count_primes", {"below": 100}) == {"below": 100, "count": 25, "largest": 97}


def test_a_bad_field_is_invalid_input_naming_it(client: MoltClient) -> None:
    with pytest.raises(InvalidInput, match="below"):
        client.call("count_primes", {"below": "many"})
    with pytest.raises(InvalidInput, match="below must be at most 50000000"):
        client.call("count_primes", {"below": 10**9})


def test_a_delivered_reminder_is_counted(client: MoltClient) -> None:
    before = reminders_sent(client)
    assert client.call("remind", {"after_ms": 1, "note": "tea"}) == {"note": "tea", "waited_ms": 1}
    assert reminders_sent(client) == before + 1


def test_a_reminder_past_its_deadline_times_out_and_is_never_delivered(client: MoltClient) -> None:
    before = reminders_sent(client)
    with pytest.raises(Timeout):
        client.call("remind", {"after_ms": REMINDER_MS, "note": "late"}, timeout_ms=100)
    time.sleep(SETTLE_S)
    assert reminders_sent(client) == before, "the timed-out reminder's future ran to its end"


def test_a_cancelled_reminder_is_never_delivered(client: MoltClient) -> None:
    before = reminders_sent(client)

    async def cancel_one() -> None:
        call = asyncio.ensure_future(client.acall("remind", {"after_ms": REMINDER_MS, "note": "never"}))
        await asyncio.sleep(0.1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(cancel_one())
    time.sleep(SETTLE_S)
    assert reminders_sent(client) == before, "the cancelled reminder's future ran to its end"


def test_reminders_past_the_concurrency_limit_are_busy(client: MoltClient) -> None:
    """The manifest admits 4 reminders at once; a fifth is Busy while they wait."""
    before = reminders_sent(client)

    async def overload() -> None:
        waiting = [
            asyncio.ensure_future(client.acall("remind", {"after_ms": 30_000, "note": f"{n}"})) for n in range(4)
        ]
        # Each task runs up to its first await, by which time its call is sent; the worker
        # reads a connection's calls in order, so the fifth arrives after the four.
        await asyncio.sleep(0)
        try:
            with pytest.raises(Busy, match="concurrency limit"):
                await client.acall("remind", {"after_ms": 0, "note": "fifth"})
            assert not any(call.done() for call in waiting), "one of the four did not wait"
        finally:
            for call in waiting:
                call.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)

    asyncio.run(overload())
    time.sleep(0.1)
    assert reminders_sent(client) == before


@pytest.fixture
def django_worker(transport: str) -> Iterator[None]:
    with override_settings(MOLT_ACCEL={**template_settings.MOLT_ACCEL, "TRANSPORT": transport, "STRICT_SHM": True}):
        yield
    close_clients()


def test_the_sync_view_offloads_count_primes(django_worker: None) -> None:
    response = Client().get("/primes", {"below": "100"})
    assert response.status_code == 200
    assert json.loads(response.content) == {"below": 100, "count": 25, "largest": 97}


def test_the_sync_view_answers_400_naming_a_bad_field(django_worker: None) -> None:
    response = Client().get("/primes", {"below": "many"})
    assert response.status_code == 400
    error = json.loads(response.content)["error"]
    assert error["code"] == "InvalidInput" and "below" in error["message"]


def test_the_async_view_offloads_remind(django_worker: None) -> None:
    response = asyncio.run(AsyncClient().get("/remind", {"after_ms": "1", "note": "tea"}))
    assert response.status_code == 200
    assert json.loads(response.content) == {"note": "tea", "waited_ms": 1}


def test_the_async_view_answers_504_past_the_deadline(django_worker: None) -> None:
    with override_settings(MOLT_ACCEL={**template_settings.MOLT_ACCEL, "TIMEOUT_MS": 100}):
        response = asyncio.run(AsyncClient().get("/remind", {"after_ms": "5000"}))
    assert response.status_code == 504
