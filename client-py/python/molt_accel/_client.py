"""``MoltClient``: calls into a molt worker from threads and asyncio tasks alike."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._codecs import PayloadCodec, get_codec
from ._config import ClientConfig
from ._exceptions import MoltError, ProtocolError, Timeout, WorkerUnavailable, error_for_status
from ._frame import DEFAULT_MAX_FRAME_BYTES, FLAG_IDEMPOTENT, MAX_ENTRY_LEN, Frame, Kind, Status, encode_call, encode_frame
from ._hooks import CallMetrics, HookRunner, Hooks
from ._metrics import ClientMetrics
from ._transports import LateReplyHandler, Transport, transport_class

__all__ = ["MoltClient"]

logger = logging.getLogger("molt_accel")

# Every live client, so a forked child can drop what it inherited (see _forget_after_fork).
# Weak: the registry must not keep a client alive.
_live_clients: weakref.WeakSet[MoltClient] = weakref.WeakSet()


@dataclass(slots=True)
class _Attempt:
    """One sending of a call: what :meth:`MoltClient._attempts` yields."""

    request_id: int
    frame: bytes
    #: ``time.monotonic_ns()`` past which the client stops waiting (deadline plus grace).
    wait_until_ns: int
    #: Set by the sender: the transport it went out on and its ``perf_counter_ns()`` then.
    transport: Transport | None = None
    sent_ns: int = 0


class MoltClient:
    """A connection to one molt worker, shared by any number of threads and asyncio tasks.

    The worker is spawned on first use (or by :meth:`start`) and restarted when it dies, at
    most ``max_restarts`` times within ``restart_window_s``; the call that starts it waits up
    to ``start_timeout_ms`` for its first answer. Every call has a deadline (``timeout_ms``)
    that the worker enforces and the client enforces too: any other caller never waits longer
    than the deadline plus ``deadline_grace_ms``, even for a wedged or starting worker, and a
    call the client gives up on (deadline, or its task cancelled) is cancelled in the worker.
    When the worker dies, every call in flight fails with :class:`WorkerUnavailable` at once;
    a call marked ``idempotent`` is then sent again to the restarted worker.

    All arguments are keyword-only and are those of :class:`~molt_accel.ClientConfig`, plus
    ``hooks`` (a :class:`~molt_accel.Hooks` or a sequence of them). With ``metrics`` (or
    ``metrics_dir``), :attr:`metrics` keeps the client-side histograms.

    >>> with MoltClient(worker_cmd=["molt_worker"], exports="molt_exports.json") as client:  # doctest: +SKIP
    ...     client.call("echo", {"x": 1}, timeout_ms=250)
    {'x': 1}
    """

    def __init__(
        self,
        *,
        worker_cmd: Sequence[str] | None = None,
        socket: str | None = None,
        transport: str = "stdio",
        exports: str | os.PathLike[str] | None = None,
        max_restarts: int = 1,
        restart_window_s: float = 60.0,
        timeout_ms: int = 1000,
        deadline_grace_ms: int = 50,
        start_timeout_ms: int = 5000,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        strict_shm: bool = False,
        metrics: bool = False,
        metrics_dir: str | os.PathLike[str] | None = None,
        metrics_interval_s: float = 10.0,
        hooks: Hooks | Sequence[Hooks] = (),
    ) -> None:
        config = ClientConfig(
            worker_cmd=worker_cmd,  # type: ignore[arg-type]  # ClientConfig checks it and makes it a tuple
            socket=socket,
            transport=transport,
            exports=os.fspath(exports) if exports is not None else None,
            max_restarts=max_restarts,
            restart_window_s=restart_window_s,
            timeout_ms=timeout_ms,
            deadline_grace_ms=deadline_grace_ms,
            start_timeout_ms=start_timeout_ms,
            max_frame_bytes=max_frame_bytes,
            strict_shm=strict_shm,
            metrics=metrics,
            metrics_dir=os.fspath(metrics_dir) if metrics_dir is not None else None,
            metrics_interval_s=metrics_interval_s,
        )
        self._setup(config, hooks)

    @classmethod
    def from_config(cls, config: ClientConfig, *, hooks: Hooks | Sequence[Hooks] = ()) -> MoltClient:
        """A client for an existing :class:`~molt_accel.ClientConfig`."""
        client = cls.__new__(cls)
        client._setup(config, hooks)
        return client

    def _setup(self, config: ClientConfig, hooks: Hooks | Sequence[Hooks]) -> None:
        self.config = config
        self._transport_class = transport_class(config.transport)
        self._hooks = HookRunner([hooks] if isinstance(hooks, Hooks) else list(hooks))
        #: Client-side histograms (``metrics`` or ``metrics_dir`` set), else None.
        self.metrics: ClientMetrics | None = None
        if config.metrics or config.metrics_dir is not None:
            self.metrics = ClientMetrics(
                config.transport, metrics_dir=config.metrics_dir, interval_s=config.metrics_interval_s
            )
        self._grace_ns = config.deadline_grace_ms * 1_000_000
        # itertools.count's __next__ runs in C under the GIL: ids are unique across threads.
        self._next_request_id = itertools.count(1).__next__
        # Guards starting, restarting and closing; never held while waiting for a reply.
        self._lock = threading.Lock()
        self._transport: Transport | None = None
        # Closes the current transport (stops its worker) if the client is garbage-collected
        # unclosed, or at interpreter exit; detached whenever the transport is let go.
        self._transport_closer: weakref.finalize[[], MoltClient] | None = None
        self._started_once = False
        self._restart_times: deque[float] = deque()
        self._last_exit: str | None = None
        self._closed = False
        _live_clients.add(self)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> MoltClient:
        """Starts the worker now instead of on the first call; raises WorkerUnavailable if it
        cannot be started."""
        self._live_transport()
        return self

    def close(self) -> None:
        """Lets in-flight calls finish (bounded), stops the worker; later calls fail with
        :class:`WorkerUnavailable`. Idempotent."""
        with self._lock:
            self._closed = True
            transport = self._let_go_of_transport()
        if transport is not None:
            transport.close()
        if self.metrics is not None:
            self.metrics.close()

    def __enter__(self) -> MoltClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> MoltClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.close)

    @property
    def in_flight(self) -> int:
        """Calls sent and not yet answered, including abandoned ones whose late reply is due."""
        transport = self._transport
        return transport.in_flight if transport is not None else 0

    @property
    def worker_pid(self) -> int | None:
        """The current worker's process id, when the transport knows it."""
        transport = self._transport
        return transport.worker_pid if transport is not None else None

    def _live_transport(self, wait_until_ns: int | None = None) -> Transport:
        """The running transport, started (or restarted) if need be; a caller that finds
        another one starting it waits until ``wait_until_ns`` at most, then raises Timeout."""
        transport = self._transport
        if transport is not None and transport.alive:
            return transport
        timeout_s = -1.0 if wait_until_ns is None else max((wait_until_ns - time.monotonic_ns()) / 1e9, 0.0)
        if not self._lock.acquire(timeout=timeout_s):
            raise Timeout("the worker was still starting at the deadline")
        try:
            if self._closed:
                raise WorkerUnavailable("the client is closed")
            transport = self._transport
            if transport is not None:
                if transport.alive:
                    return transport
                self._let_go_of_transport()
                transport.close()  # reaps the worker, so the reason carries its exit status
                self._last_exit = transport.exit_reason
            if self._started_once:
                self._use_restart_budget()
            self._started_once = True
            # The transport's threads keep it alive; it must not keep the client alive in turn.
            try:
                transport = self._transport_class.open(
                    self.config, next_request_id=self._next_request_id, late_reply=_weak_late_reply(self)
                )
            except WorkerUnavailable as exc:
                self._last_exit = exc.safe_message
                raise
            self._transport = transport
            self._transport_closer = weakref.finalize(self, transport.close)
            return transport
        finally:
            self._lock.release()

    def _let_go_of_transport(self) -> Transport | None:
        """Takes the current transport away from the client (the caller closes or forgets
        it); the client no longer closes it when collected."""
        transport, self._transport = self._transport, None
        closer, self._transport_closer = self._transport_closer, None
        if closer is not None:
            closer.detach()
        return transport

    def _use_restart_budget(self) -> None:
        """Counts one restart, or raises WorkerUnavailable (saying why) if none is left."""
        max_restarts = self.config.max_restarts
        window_s = self.config.restart_window_s
        now = time.monotonic()
        while self._restart_times and now - self._restart_times[0] > window_s:
            self._restart_times.popleft()
        if len(self._restart_times) >= max_restarts:
            if max_restarts == 0:
                raise WorkerUnavailable(f"the worker is down ({self._last_exit}) and restarts are disabled")
            retry_in = window_s - (now - self._restart_times[0])
            raise WorkerUnavailable(
                f"the worker is down ({self._last_exit}); it was restarted {len(self._restart_times)} time(s) "
                f"in the last {window_s:g} s, the most max_restarts allows; next attempt in {retry_in:.0f} s"
            )
        self._restart_times.append(now)
        logger.warning("restarting the molt worker (%s)", self._last_exit)

    def _forget_after_fork(self) -> None:
        # In a forked child: the worker, its pipes and any lock another thread held at fork
        # time belong to the parent. Start from scratch; the child spawns its own worker.
        self._lock = threading.Lock()
        self._hooks.forget_after_fork()
        transport = self._let_go_of_transport()
        if transport is not None:
            transport.forget_after_fork()
        self._started_once = False
        self._restart_times.clear()

    # -- calls ---------------------------------------------------------------------------------

    def ping(self, *, timeout_ms: int | None = None) -> None:
        """Checks that the worker answers. Every frame sent before a ping that returns has
        been read by the worker (frames on one connection arrive in order)."""
        wait_until_ns = time.monotonic_ns() + self._timeout_ns(timeout_ms)
        transport = self._live_transport(wait_until_ns)
        request_id = self._next_request_id()
        frame = encode_frame(Frame(kind=Kind.PING, request_id=request_id))
        reply = transport.exchange(request_id, "", frame, wait_until_ns)
        if reply.kind is not Kind.PONG:
            raise ProtocolError("the worker answered a ping with something other than a pong", request_id=request_id)

    def call(
        self, entry: str, payload: Any, *, timeout_ms: int | None = None, codec: str = "msgpack", idempotent: bool = False
    ) -> Any:
        """Runs ``entry`` in the worker on ``payload`` and returns its decoded result.

        ``codec`` is ``"msgpack"``, ``"json"``, ``"raw"`` (bytes in, bytes out), or one that
        keeps the reply's bytes: ``"json_body"`` (the entry's JSON bytes, for a response body)
        or ``"arrow_ipc"`` (its Arrow IPC stream). Raises a :class:`~molt_accel.MoltError`
        subclass when the call does not succeed.
        """
        attempts = self._attempts(entry, payload, timeout_ms, codec, idempotent)
        attempt = next(attempts)
        while True:
            transport = attempt.transport = self._transport_for(entry, attempt.wait_until_ns)
            attempt.sent_ns = time.perf_counter_ns()
            outcome: Frame | MoltError
            try:
                outcome = transport.exchange(attempt.request_id, entry, attempt.frame, attempt.wait_until_ns)
            except MoltError as exc:
                outcome = exc
            try:
                attempt = attempts.send(outcome)
            except StopIteration as done:
                return done.value

    async def acall(
        self, entry: str, payload: Any, *, timeout_ms: int | None = None, codec: str = "msgpack", idempotent: bool = False
    ) -> Any:
        """:meth:`call` for asyncio: awaits the reply without blocking the event loop.

        If the awaiting task is cancelled, the worker is told to cancel the call and
        ``CancelledError`` propagates.
        """
        attempts = self._attempts(entry, payload, timeout_ms, codec, idempotent)
        attempt = next(attempts)
        while True:
            transport = self._transport
            if transport is None or not transport.alive:
                # Spawning and the first ping block, so they run off the loop; only a start
                # or restart pays for that thread hop.
                transport = await asyncio.to_thread(self._transport_for, entry, attempt.wait_until_ns)
            attempt.transport = transport
            attempt.sent_ns = time.perf_counter_ns()
            outcome: Frame | MoltError
            try:
                outcome = await transport.aexchange(attempt.request_id, entry, attempt.frame, attempt.wait_until_ns)
            except MoltError as exc:
                outcome = exc
            except asyncio.CancelledError:
                transport.cancel(attempt.request_id)
                raise
            try:
                attempt = attempts.send(outcome)
            except StopIteration as done:
                return done.value

    def _attempts(
        self, entry: str, payload: Any, timeout_ms: int | None, codec: str, idempotent: bool
    ) -> Generator[_Attempt, Frame | MoltError, Any]:
        """The one retry loop of :meth:`call` and :meth:`acall`, free of I/O: it yields each
        attempt to send, and the caller sends back the attempt's reply or the
        :class:`MoltError` it failed with (having set the attempt's ``transport`` and
        ``sent_ns``). It returns the decoded result, or raises the call's error once no
        re-send is allowed."""
        started_ns = time.perf_counter_ns()
        entry_bytes, payload_codec, deadline_ns, data, flags = self._prepare(entry, payload, timeout_ms, codec, idempotent)
        resends = 0
        while True:
            request_id = self._next_request_id()
            frame = encode_call(request_id, entry_bytes, payload_codec.wire, flags, deadline_ns, data)
            encode_ns = time.perf_counter_ns() - started_ns
            self._hooks.before_send(entry, len(data))
            attempt = _Attempt(request_id, frame, deadline_ns + self._grace_ns)
            outcome = yield attempt
            if isinstance(outcome, Frame):
                round_trip_ns = time.perf_counter_ns() - attempt.sent_ns
                return self._result(entry, outcome, payload_codec, encode_ns, round_trip_ns)
            assert attempt.transport is not None
            if not self._resends(outcome, attempt.transport, request_id, entry, idempotent, deadline_ns, resends):
                raise outcome
            resends += 1
            started_ns = time.perf_counter_ns()

    def _timeout_ns(self, timeout_ms: int | None) -> int:
        if timeout_ms is None:
            return self.config.timeout_ms * 1_000_000
        if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool) or timeout_ms <= 0:
            raise ValueError("timeout_ms must be a positive integer")
        return timeout_ms * 1_000_000

    def _prepare(
        self, entry: str, payload: Any, timeout_ms: int | None, codec: str, idempotent: bool
    ) -> tuple[bytes, PayloadCodec, int, bytes, int]:
        """What every attempt of a call sends: the entry's bytes, the codec, the deadline, the
        encoded payload and the frame flags. Checks the arguments before anything is sent."""
        entry_bytes = _entry_bytes(entry)
        payload_codec = get_codec(codec)
        deadline_ns = time.monotonic_ns() + self._timeout_ns(timeout_ms)
        try:
            data = payload_codec.encode(payload)
        except MoltError as exc:
            self._hooks.on_error(entry, exc)
            raise
        return entry_bytes, payload_codec, deadline_ns, data, FLAG_IDEMPOTENT if idempotent else 0

    def _transport_for(self, entry: str, wait_until_ns: int) -> Transport:
        try:
            return self._live_transport(wait_until_ns)
        except MoltError as exc:
            self._hooks.on_error(entry, exc)
            raise

    def _resends(
        self, exc: MoltError, transport: Transport, request_id: int, entry: str, idempotent: bool, deadline_ns: int,
        attempt: int,
    ) -> bool:
        """Handles an attempt that failed with ``exc``: True if the call goes to a restarted
        worker, else False once the worker was told to cancel it (client-side Timeout) and the
        error hooks ran.

        A call is re-sent only when the worker is gone, it cannot have run (never reached a
        worker) or may run twice (idempotent), it has time left, and it has not already been
        re-sent once per allowed restart."""
        if (
            isinstance(exc, WorkerUnavailable)
            and (idempotent or not exc.reached_worker)
            and attempt < self.config.max_restarts + 1
            and time.monotonic_ns() < deadline_ns
        ):
            return True
        if isinstance(exc, Timeout):
            transport.cancel(request_id)
        self._hooks.on_error(entry, exc)
        return False

    def _result(self, entry: str, reply: Frame, payload_codec: PayloadCodec, encode_ns: int, round_trip_ns: int) -> Any:
        request_id = reply.request_id
        error: MoltError | None = None
        value: Any = None
        decode_ns = 0
        if reply.kind is not Kind.REPLY:
            error = ProtocolError(f"the worker answered a call with a {reply.kind.name} frame", request_id=request_id)
        elif reply.status is not Status.OK:
            message = reply.payload.decode("utf-8", "replace")
            error = error_for_status(reply.status.wire_name, message, request_id=request_id)
        elif reply.codec is not payload_codec.expected_reply:
            error = ProtocolError(
                f"the worker replied in codec {reply.codec.name} to a {payload_codec.name} call", request_id=request_id
            )
        else:
            decode_started_ns = time.perf_counter_ns()
            try:
                value = payload_codec.decode(reply.payload)
            except ProtocolError as exc:
                exc.request_id = request_id
                error = exc
            decode_ns = time.perf_counter_ns() - decode_started_ns
        self._observe(entry, reply, round_trip_ns, encode_ns, decode_ns if reply.status is Status.OK else None)
        if error is not None:
            self._hooks.on_error(entry, error)
            raise error
        return value

    def _on_late_reply(self, entry: str, reply: Frame, sent_ns: int) -> None:
        self._observe(entry, reply, time.perf_counter_ns() - sent_ns, None, None)

    def _observe(self, entry: str, reply: Frame, round_trip_ns: int, encode_ns: int | None, decode_ns: int | None) -> None:
        """Records a reply in the histograms and hands it to the ``after_recv`` hooks, with
        one reading of each time so both report the same numbers; ``encode_ns`` and
        ``decode_ns`` are None when there was nothing to encode or decode (a late reply, an
        error reply), which the hooks see as 0."""
        if self.metrics is not None:
            self.metrics.record(
                entry, reply.status.wire_name, round_trip_ns=round_trip_ns, encode_ns=encode_ns, decode_ns=decode_ns
            )
        if self._hooks.wants_metrics:
            metrics = CallMetrics(
                queue_us=reply.queue_us,
                exec_us=reply.exec_us,
                queue_depth=reply.queue_depth,
                encode_us=(encode_ns or 0) // 1000,
                decode_us=(decode_ns or 0) // 1000,
                round_trip_us=round_trip_ns // 1000,
            )
            self._hooks.after_recv(entry, reply.status.wire_name, metrics)


def _weak_late_reply(client: MoltClient) -> LateReplyHandler:
    """``client._on_late_reply`` without a strong reference to the client."""
    method = weakref.WeakMethod(client._on_late_reply)

    def late_reply(entry: str, reply: Frame, sent_ns: int) -> None:
        handler = method()
        if handler is not None:
            handler(entry, reply, sent_ns)

    return late_reply


def _entry_bytes(entry: str) -> bytes:
    encoded = entry.encode()
    if not encoded or len(encoded) > MAX_ENTRY_LEN:
        raise ValueError(f"an entry name is 1 to {MAX_ENTRY_LEN} bytes of UTF-8")
    return encoded


def _forget_clients_after_fork() -> None:
    for client in list(_live_clients):
        client._forget_after_fork()


os.register_at_fork(after_in_child=_forget_clients_after_fork)
