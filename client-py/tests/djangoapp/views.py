"""Views offloading the test worker's entries, each in a sync and an async flavour."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from molt_accel.django import molt_offload


def query(request: HttpRequest) -> dict[str, Any]:
    return dict(request.GET.items())


def spin_payload(request: HttpRequest) -> Any:
    # The uvicorn test waits for this file: once it exists the call is about to be sent, with
    # no await in between, so a disconnect seen after it cancels a call the worker has.
    marker = os.environ.get("MOLT_TEST_SENT_MARKER")
    if marker:
        Path(marker).touch()
    ms = request.GET.get("ms", "0")
    return {"ms": int(ms) if ms.isdigit() else ms}


def validated(request: HttpRequest) -> Any:
    if "user_id" not in request.GET:
        return JsonResponse({"error": {"code": "InvalidInput", "message": "user_id is required"}}, status=400)
    return {"user_id": request.GET["user_id"]}


@molt_offload(entry="echo")
def echo(request: HttpRequest) -> dict[str, Any]:
    return query(request)


@molt_offload(entry="echo")
async def echo_async(request: HttpRequest) -> dict[str, Any]:
    return query(request)


@molt_offload(entry="echo")
def echo_list(request: HttpRequest) -> list[str]:
    return list(request.GET)


@molt_offload(entry="echo", codec="raw")
async def echo_raw_async(request: HttpRequest) -> bytes:
    return request.body


@molt_offload(entry="echo")
async def validated_async(request: HttpRequest) -> Any:
    return validated(request)


def _spin_view(request: HttpRequest) -> HttpResponse:
    raise AssertionError("payload= builds the payload; the view body is not used")


async def _spin_view_async(request: HttpRequest) -> HttpResponse:
    raise AssertionError("payload= builds the payload; the view body is not used")


spin = molt_offload(entry="spin", payload=spin_payload, timeout_ms=20_000)(_spin_view)
spin_async = molt_offload(entry="spin", payload=spin_payload, timeout_ms=20_000)(_spin_view_async)


@molt_offload(entry="sleep", timeout_ms=100)
def sleep_short(request: HttpRequest) -> dict[str, int]:
    return {"ms": 5000}


@molt_offload(entry="sleep", timeout_ms=100)
async def sleep_short_async(request: HttpRequest) -> dict[str, int]:
    return {"ms": 5000}


@molt_offload(entry="nope")
def unknown(request: HttpRequest) -> dict[str, int]:
    return {}


@molt_offload(entry="nope")
async def unknown_async(request: HttpRequest) -> dict[str, int]:
    return {}


@molt_offload(entry="panic")
def panic(request: HttpRequest) -> dict[str, int]:
    return {}


@molt_offload(entry="panic")
async def panic_async(request: HttpRequest) -> dict[str, int]:
    return {}
