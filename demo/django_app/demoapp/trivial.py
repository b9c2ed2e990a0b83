"""The ceiling views: the least a Django JSON endpoint can do, served like the others.

`/trivial` (sync, gunicorn) and `/trivial_async` (`async def`, uvicorn) read nothing and
answer a constant JSON object through `JsonResponse`. No work, no worker: what they cost per
request is Django, the HTTP server and the load tool alone. The benchmark measures them
beside the demo's endpoints so that every "how close does `/offload` get to free" ratio, and
the per-request overhead of offloading (`docs/benchmark.md`), comes from one run.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

#: The body both views answer: small, so that rendering it costs next to nothing.
BODY = {"ok": True}


def trivial(request: HttpRequest) -> JsonResponse:
    """The sync ceiling: a constant JSON answer."""
    return JsonResponse(BODY)


async def trivial_async(request: HttpRequest) -> JsonResponse:
    """The async ceiling: the same answer from an `async def` view, so Django's ASGI handler
    runs it on the event loop with no thread hop."""
    return JsonResponse(BODY)
