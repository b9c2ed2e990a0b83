"""The template's Django views: each keeps its URL and builds the payload; the worker's entry
computes the answer, which comes back as the JSON response. Copy them into your own app."""

from __future__ import annotations

from django.http import HttpRequest

from molt_accel.django import molt_offload


def _int_or_as_is(value: str) -> int | str:
    """An integer query parameter as an int; anything else is left for the entry to refuse,
    so there is one place that validates the request and one message that names the field."""
    return int(value) if value.isdecimal() else value


@molt_offload(entry="count_primes")
def count_primes(request: HttpRequest) -> dict[str, object]:
    """GET /primes?below=N: CPU-bound work on the worker's compute pool."""
    return {"below": _int_or_as_is(request.GET.get("below", "1000"))}


@molt_offload(entry="remind")
async def remind(request: HttpRequest) -> dict[str, object]:
    """GET /remind?after_ms=N&note=...: an async entry; a client that hangs up cancels it."""
    return {
        "after_ms": _int_or_as_is(request.GET.get("after_ms", "0")),
        "note": request.GET.get("note", ""),
    }
