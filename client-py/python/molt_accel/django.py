"""Django integration: ``@molt_offload`` and the per-process client, configured in one place.

Settings (``settings.MOLT_ACCEL``, every key optional)::

    MOLT_ACCEL = {
        "WORKER_CMD": ["/srv/bin/molt_worker"],   # program and its own arguments
        "EXPORTS": "/srv/molt_exports.json",       # exports manifest for a spawned worker
        "TRANSPORT": "stdio",                      # or "shm" (shared memory)
        "SOCKET": None,                            # attach to a running worker (shm)
        "STRICT_SHM": False,                       # shm: fail instead of falling back to stdio
        "TIMEOUT_MS": 1000,                        # default deadline of a call
        "DEADLINE_GRACE_MS": 50,
        "START_TIMEOUT_MS": 5000,
        "MAX_RESTARTS": 1,
        "RESTART_WINDOW_S": 60,
        "MAX_FRAME_BYTES": 16777216,
        "BUSY_STATUS": 429,                        # or 503
        "RETRY_AFTER_S": 1,                        # Retry-After on 429 and 503
        "METRICS_PATH": None,                      # JSONL, one line per reply
        "METRICS": False,                          # client-side HDR histograms
        "METRICS_DIR": None,                       # ... and .hlog dumps there (implies METRICS)
        "METRICS_INTERVAL_S": 10,
    }

``METRICS_PATH`` falls back to the ``MOLT_DEMO_METRICS_PATH`` environment variable.
:func:`metrics_view` serves the Prometheus text of both sides (docs/operations.md).

Each process has one client per transport, created on first use and closed at exit. A client
created before a fork (gunicorn's pre-fork model) is never used by the child: the child
starts its own worker on first use.

A failed call is logged on the ``molt_accel`` logger (WARNING for 5xx, INFO otherwise) with
the attributes ``request_id``, ``entry`` and ``status``, the worker's log fields.

Errors become JSON responses ``{"error": {"code": <status name>, "message": <safe message>}}``:

=================  ======================================================================
WorkerUnavailable  503 + Retry-After
Busy               429 + Retry-After (``BUSY_STATUS`` 503: 503 + Retry-After)
Timeout            504
InvalidInput       400
NotFound           500 (the view names an entry the worker does not export: misconfiguration)
InternalError      500
ProtocolError      500
Unavailable        503 + Retry-After (a service the entry needs, such as its database, is down)
Cancelled          499 (nginx's "client closed request"; only seen if the worker cancels a
                   call on its own, e.g. when it is shutting down)
=================  ======================================================================
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import importlib.util
import inspect
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.http.response import HttpResponseBase

from ._client import MoltClient
from ._codecs import get_codec
from ._config import ClientConfig
from ._exceptions import Busy, MoltError
from ._hooks import Hooks, JsonlMetrics
from ._metrics import label_worker_texts, prometheus_text

__all__ = [
    "molt_offload",
    "Offload",
    "offload_of",
    "get_client",
    "close_clients",
    "error_response",
    "metrics_view",
    "STATUS_CODES",
    "SETTINGS_KEYS",
    "attached_worker_command",
]

logger = logging.getLogger("molt_accel")

#: HTTP status for each error kind (Busy: see the ``BUSY_STATUS`` setting).
STATUS_CODES: Mapping[str, int] = {
    "WorkerUnavailable": 503,
    "Busy": 429,
    "Timeout": 504,
    "InvalidInput": 400,
    "NotFound": 500,
    "InternalError": 500,
    "ProtocolError": 500,
    "Cancelled": 499,
    "Unavailable": 503,
}
_RETRY_AFTER_STATUSES = (429, 503)
_METRICS_ENV = "MOLT_DEMO_METRICS_PATH"
_DJANGO_ONLY_KEYS = {"BUSY_STATUS", "RETRY_AFTER_S", "METRICS_PATH"}
_CLIENT_KEYS = {field.name.upper() for field in dataclasses.fields(ClientConfig)}
#: Every key ``MOLT_ACCEL`` may have.
SETTINGS_KEYS: frozenset[str] = frozenset(_CLIENT_KEYS | _DJANGO_ONLY_KEYS)

View = TypeVar("View", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class _Settings:
    client: ClientConfig
    busy_status: int
    retry_after_s: int
    metrics_path: str | None

    @classmethod
    def load(cls) -> _Settings:
        raw = getattr(settings, "MOLT_ACCEL", {})
        if not isinstance(raw, Mapping):
            raise ImproperlyConfigured("MOLT_ACCEL must be a dict")
        unknown = set(raw) - SETTINGS_KEYS
        if unknown:
            allowed = ", ".join(sorted(SETTINGS_KEYS))
            raise ImproperlyConfigured(f"MOLT_ACCEL has unknown keys {sorted(unknown)}; allowed: {allowed}")
        busy_status = raw.get("BUSY_STATUS", 429)
        if busy_status not in (429, 503):
            raise ImproperlyConfigured("MOLT_ACCEL['BUSY_STATUS'] must be 429 or 503")
        retry_after_s = raw.get("RETRY_AFTER_S", 1)
        if not isinstance(retry_after_s, int) or retry_after_s < 0:
            raise ImproperlyConfigured("MOLT_ACCEL['RETRY_AFTER_S'] must be a non-negative integer")
        try:
            client = ClientConfig.from_settings({k: v for k, v in raw.items() if k in _CLIENT_KEYS})
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"MOLT_ACCEL: {exc}") from None
        metrics_path = raw.get("METRICS_PATH") or os.environ.get(_METRICS_ENV) or None
        return cls(client, busy_status, retry_after_s, metrics_path)


class _ProcessClients:
    """The clients of this process, one per transport, created lazily; replaced wholesale in
    a forked child (see ``_after_fork_in_child``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.settings: _Settings | None = None
        self.clients: dict[str, MoltClient] = {}
        self.metrics: JsonlMetrics | None = None


_state = _ProcessClients()


def _current_settings() -> _Settings:
    state = _state
    loaded = state.settings
    if loaded is None:
        with state.lock:
            if state.settings is None:
                state.settings = _Settings.load()
            loaded = state.settings
    return loaded


def get_client(transport: str | None = None) -> MoltClient:
    """This process's client for ``transport`` (default: the ``TRANSPORT`` setting)."""
    conf = _current_settings()
    name = transport or conf.client.transport
    state = _state
    client = state.clients.get(name)
    if client is not None:
        return client
    with state.lock:
        client = state.clients.get(name)
        if client is None:
            hooks: list[Hooks] = []
            if conf.metrics_path is not None:
                if state.metrics is None:
                    state.metrics = JsonlMetrics(conf.metrics_path)
                hooks.append(Hooks(after_recv=state.metrics))
            try:
                config = dataclasses.replace(conf.client, transport=name)
                client = MoltClient.from_config(config, hooks=hooks)
            except ValueError as exc:
                raise ImproperlyConfigured(f"MOLT_ACCEL: {exc}") from None
            state.clients[name] = client
    return client


def attached_worker_command(socket: str | None = None, extra_args: Sequence[str] = ()) -> list[str]:
    """The command that runs the settings' worker (``WORKER_CMD``, ``EXPORTS``) listening on
    ``socket`` (default: the ``SOCKET`` setting), the worker a client with ``SOCKET`` attaches
    to; ``extra_args`` go to the worker (``--log-format json``, ...). What ``manage.py
    molt_worker`` runs and :mod:`molt_accel.testing` starts."""
    conf = _Settings.load()
    path = socket if socket is not None else conf.client.socket
    if path is None:
        raise ImproperlyConfigured("no socket to listen on: set MOLT_ACCEL['SOCKET'] or pass one")
    command = conf.client.worker_command([])
    if "--socket" in command:
        raise ImproperlyConfigured("MOLT_ACCEL['WORKER_CMD'] has --socket: the socket is MOLT_ACCEL['SOCKET']")
    return [*command, "--socket", os.fspath(path), *extra_args]


def close_clients() -> None:
    """Closes this process's clients (their workers stop); the next call creates new ones.
    Runs at interpreter exit and when ``MOLT_ACCEL`` is changed by ``override_settings``."""
    state = _state
    with state.lock:
        clients = list(state.clients.values())
        state.clients.clear()
        state.settings = None
        metrics, state.metrics = state.metrics, None
    for client in clients:
        client.close()
    if metrics is not None:
        metrics.close()


def error_response(error: MoltError) -> JsonResponse:
    """The JSON response for a failed call (see the module docstring for the mapping)."""
    conf = _current_settings()
    status = conf.busy_status if isinstance(error, Busy) else STATUS_CODES.get(error.status, 500)
    response = JsonResponse({"error": {"code": error.status, "message": error.safe_message}}, status=status)
    if status in _RETRY_AFTER_STATUSES:
        response["Retry-After"] = str(conf.retry_after_s)
    return response


#: Content type of a table reply answered as it came (``table="table"`` without ``render``).
ARROW_STREAM_CONTENT_TYPE = "application/vnd.apache.arrow.stream"


def _result_response(result: Any, passthrough: bool, render: Callable[[Any], Any] | None) -> HttpResponseBase:
    if passthrough:
        return HttpResponse(result, content_type="application/json")
    if render is not None:
        result = render(result)
        if isinstance(result, HttpResponseBase):
            return result
    if isinstance(result, (bytes, bytearray)):
        return HttpResponse(bytes(result), content_type="application/octet-stream")
    return JsonResponse(result, safe=isinstance(result, dict))


class _TableCall:
    """How a ``table=`` view's call is sent and its reply read, by ``molt_accel.arrow``.

    That module is imported on the first call, not with the view: pyarrow alone adds some
    60 MiB to a process, which a Django process that never serves a table view should not
    carry. Its presence is checked at once, so a missing extra still fails at import time."""

    def __init__(self, reply: str, render: Callable[[Any], Any] | None) -> None:
        if importlib.util.find_spec("pyarrow") is None:
            raise ImproperlyConfigured("@molt_offload(table=...) needs pyarrow: install molt_accel[arrow]")
        self._reply = reply
        self._render = render

    def payload(self, client: MoltClient, entry: str, body: Any) -> bytes:
        from .arrow import _call_payload

        return _call_payload(client, entry, body)

    def response(self, reply: bytes) -> HttpResponseBase:
        from .arrow import _reply_value, table_from_ipc

        if self._reply == "value":
            return _result_response(_reply_value(reply), False, self._render)
        if self._render is None:
            # Not decoded: the stream the entry wrote is the body.
            return HttpResponse(reply, content_type=ARROW_STREAM_CONTENT_TYPE)
        return _result_response(table_from_ipc(reply), False, self._render)


def _log_failure(entry: str, error: MoltError) -> None:
    # The fields the worker's own records carry (--log-format json), for a log shipper that
    # joins both sides: a JSON formatter emits a record's extra attributes as keys.
    level = logging.WARNING if STATUS_CODES.get(error.status, 500) >= 500 else logging.INFO
    fields = {"request_id": error.request_id, "entry": entry, "status": error.status}
    logger.log(level, "molt_offload %s: %s: %s", entry, error.status, error.safe_message, extra=fields)


@dataclasses.dataclass(frozen=True)
class Offload:
    """What a ``@molt_offload`` view calls, as the system checks read it (:func:`offload_of`)."""

    entry: str
    codec: str
    timeout_ms: int | None
    transport: str | None
    #: ``"value"`` or ``"table"`` for a view that sends tables (``table=``), else ``None``.
    table: str | None = None


_OFFLOAD_ATTR = "molt_offload"


def offload_of(view: Callable[..., Any]) -> Offload | None:
    """The :class:`Offload` of a view that ``@molt_offload`` decorated, else ``None``."""
    found = getattr(view, _OFFLOAD_ATTR, None)
    return found if isinstance(found, Offload) else None


def molt_offload(
    *,
    entry: str,
    codec: str = "msgpack",
    timeout_ms: int | None = None,
    transport: str | None = None,
    payload: Callable[..., Any] | None = None,
    idempotent: bool = False,
    passthrough: bool = False,
    table: Literal["value", "table"] | None = None,
    render: Callable[[Any], Any] | None = None,
) -> Callable[[View], View]:
    """Runs a view's work in the worker: the view (or ``payload``) builds the payload from
    the request, the decorator calls ``entry`` with it and returns a ``JsonResponse`` of the
    result, or the error response of the module docstring.

    Works on sync and async views. The decorated view returns the payload (an
    ``HttpResponse`` it returns instead is passed through untouched, e.g. a validation error);
    with ``payload=callable`` that callable, called like the view, builds it and the view's
    body is not used. ``timeout_ms`` defaults to the ``TIMEOUT_MS`` setting, ``transport`` to
    ``TRANSPORT``. In an async view, a client that disconnects cancels the call in the worker.

    With ``passthrough=True`` the entry writes the response body itself, as JSON bytes (for
    instance with molt-db's ``DjangoJson``, which writes what ``JsonResponse`` would): the call
    goes in the ``json_body`` codec and the reply's bytes become the body of an
    ``application/json`` response without being decoded and encoded again.

    With ``table="value"`` or ``table="table"`` the view sends tables (``molt_accel[arrow]``,
    docs/data-path.md): it returns a pyarrow Table or RecordBatch, a polars or pandas
    DataFrame, a list of them, or :class:`molt_accel.arrow.Tables` to add parameters, and
    the call goes as Arrow IPC streams (:func:`molt_accel.arrow.call_table`). ``"value"``:
    the entry answers a MsgPack value (a summary), returned as JSON. ``"table"``: it answers
    a table, whose Arrow IPC stream is the body of an ``application/vnd.apache.arrow.stream``
    response, not decoded. Something that is not a table, or tables over the client's
    ``MAX_FRAME_BYTES``, is the 400 of InvalidInput, nothing sent.

    ``render=callable(result)`` turns the call's result (the decoded value; with
    ``table="table"`` the pyarrow Table, read in place) into what the view answers: an
    ``HttpResponse``, returned as it is, or a value returned as JSON (for instance rounded,
    reshaped or with fields added). Not with ``passthrough``, whose bytes are not decoded.

    >>> @molt_offload(entry="list_items", timeout_ms=250)  # doctest: +SKIP
    ... def items(request):
    ...     return {"user_id": int(request.GET["user_id"])}
    """
    # Mistakes in the decorator's arguments fail at import time, not on the first request.
    get_codec(codec)
    if passthrough:
        if codec != "msgpack":
            raise TypeError("passthrough=True sends the call as JSON: it takes no codec")
        if render is not None:
            raise TypeError("passthrough=True answers the entry's bytes undecoded: it takes no render")
        if table is not None:
            raise TypeError("passthrough=True and table= do not combine: a table call is Arrow IPC")
        codec = "json_body"
    table_call: _TableCall | None = None
    if table is not None:
        if table not in ("value", "table"):
            raise TypeError(f"table must be 'value' or 'table', not {table!r}")
        if codec != "msgpack":
            raise TypeError("table= sends the tables as Arrow IPC streams: it takes no codec")
        table_call = _TableCall(table, render)
        codec = "raw"
    offload_info = Offload(entry=entry, codec=codec, timeout_ms=timeout_ms, transport=transport, table=table)

    def decorate(view: View) -> View:
        build = payload if payload is not None else view
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def offload_async(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
                body = build(request, *args, **kwargs)
                if inspect.isawaitable(body):
                    body = await body
                if isinstance(body, HttpResponseBase):
                    return body
                client = get_client(transport)
                try:
                    if table_call is not None:
                        body = table_call.payload(client, entry, body)
                    result = await client.acall(entry, body, timeout_ms=timeout_ms, codec=codec, idempotent=idempotent)
                    if table_call is not None:
                        return table_call.response(result)
                except MoltError as error:
                    _log_failure(entry, error)
                    return error_response(error)
                return _result_response(result, passthrough, render)

            setattr(offload_async, _OFFLOAD_ATTR, offload_info)
            return offload_async  # type: ignore[return-value]

        if payload is not None and iscoroutinefunction(payload):
            raise TypeError("an async payload builder needs an async view")

        @functools.wraps(view)
        def offload(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            body = build(request, *args, **kwargs)
            if isinstance(body, HttpResponseBase):
                return body
            client = get_client(transport)
            try:
                if table_call is not None:
                    body = table_call.payload(client, entry, body)
                result = client.call(entry, body, timeout_ms=timeout_ms, codec=codec, idempotent=idempotent)
                if table_call is not None:
                    return table_call.response(result)
            except MoltError as error:
                _log_failure(entry, error)
                return error_response(error)
            return _result_response(result, passthrough, render)

        setattr(offload, _OFFLOAD_ATTR, offload_info)
        return offload  # type: ignore[return-value]

    return decorate


#: Content type of the Prometheus text exposition format 0.0.4.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: How long :func:`metrics_view` waits for each worker's ``__metrics__`` reply.
_WORKER_SCRAPE_TIMEOUT_MS = 2000


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text for a scraper, so neither side needs a port of its own: the client-side
    histograms of this process's clients (with ``METRICS`` or ``METRICS_DIR``), then what the
    worker of each client returns for the ``__metrics__`` entry, every sample labelled with its
    transport. Only clients already in use are scraped (a scrape creates none). It has no
    authentication: route it on an internal path (``path("internal/metrics", metrics_view)``).
    Each process answers for itself; see docs/operations.md for pre-forked servers."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    state = _state
    with state.lock:
        clients = dict(state.clients)
    texts: dict[str, str] = {}
    failures: dict[str, str] = {}
    for transport, client in clients.items():
        try:
            reply = client.call("__metrics__", b"", codec="raw", timeout_ms=_WORKER_SCRAPE_TIMEOUT_MS)
            texts[transport] = reply.decode("utf-8", "replace")
        except MoltError as exc:
            failures[transport] = f"{type(exc).__name__}: {exc.safe_message}"
    sources = [client.metrics for client in clients.values() if client.metrics is not None]
    body = prometheus_text(sources) + label_worker_texts(texts, failures)
    return HttpResponse(body, content_type=PROMETHEUS_CONTENT_TYPE)


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "MOLT_ACCEL":
        close_clients()


def _after_fork_in_child() -> None:
    # The parent's clients drop their workers by themselves (MoltClient's own fork hook);
    # replacing the state also replaces a lock another thread may have held at fork time.
    global _state
    _state = _ProcessClients()


setting_changed.connect(_on_setting_changed)
atexit.register(close_clients)
os.register_at_fork(after_in_child=_after_fork_in_child)
