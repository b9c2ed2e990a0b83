"""The ceiling views answer their constant JSON, sync and async, without a worker."""

from __future__ import annotations

import asyncio
import json

from django.test import AsyncClient, Client


def test_trivial_answers_its_constant_json() -> None:
    response = Client().get("/trivial")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"ok": True}


def test_trivial_async_answers_the_same_from_an_async_view() -> None:
    response = asyncio.run(AsyncClient().get("/trivial_async"))
    assert response.status_code == 200
    assert json.loads(response.content) == {"ok": True}
