"""Tables in and out of the worker as Arrow IPC streams (needs ``molt_accel[arrow]``).

A table call sends one or more tables, each as an Arrow IPC stream, back to back in one raw
payload; the call's parameters travel as JSON in the first table's schema metadata
(``molt.params``). The worker answers a table (an Arrow IPC stream) or a small MsgPack
value. docs/data-path.md has the format and the limits.

Tables may be pyarrow Tables or RecordBatches, polars DataFrames or pandas DataFrames:
columns are converted by pyarrow and polars in bulk, never row by row, and nothing is
pickled.

>>> import pyarrow as pa
>>> from molt_accel.arrow import table_from_ipc, table_to_ipc
>>> data = table_to_ipc(pa.table({"n": [1, 2]}), params={"limit": 5})
>>> table_from_ipc(data).column("n").to_pylist()
[1, 2]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgpack
import pyarrow as pa
import pyarrow.ipc as ipc

from ._exceptions import InvalidInput, ProtocolError

if TYPE_CHECKING:
    from ._client import MoltClient

__all__ = [
    "PARAMS_KEY",
    "TableLike",
    "Output",
    "Tables",
    "table_to_ipc",
    "table_from_ipc",
    "call_table",
    "acall_table",
    "call_table_value",
    "acall_table_value",
]

#: The schema metadata key the call's parameters travel under, as JSON.
PARAMS_KEY = "molt.params"

#: What a table argument may be: a pyarrow Table or RecordBatch, a polars or pandas DataFrame.
TableLike = Any

#: What a table reply is given back as.
Output = Literal["pyarrow", "polars", "pandas"]


class Tables:
    """What a table call sends: its tables, in the order the entry takes them, and its
    parameters. What a ``@molt_offload(table=...)`` view returns when the call has
    parameters (one table or a list of them needs no wrapping).

    >>> sent = Tables(pa.table({"n": [1]}), params={"limit": 5})
    >>> len(sent.tables), sent.params
    (1, {'limit': 5})
    """

    __slots__ = ("tables", "params")

    def __init__(self, *tables: TableLike, params: Mapping[str, Any] | None = None) -> None:
        self.tables: tuple[TableLike, ...] = tables
        self.params: Mapping[str, Any] | None = params


def _as_arrow(table: TableLike) -> pa.Table:
    """``table`` as a pyarrow Table, converted column-wise by its own library."""
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, pa.RecordBatch):
        return pa.Table.from_batches([table])
    # Looked up, not imported: a caller that passes a polars or pandas frame has imported it.
    polars = sys.modules.get("polars")
    if polars is not None and isinstance(table, polars.DataFrame):
        return table.to_arrow()
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(table, pandas.DataFrame):
        return pa.Table.from_pandas(table, preserve_index=False)
    raise InvalidInput(
        f"a table must be a pyarrow Table or RecordBatch, a polars or a pandas DataFrame, not {type(table).__name__}"
    )


def table_to_ipc(*tables: TableLike, params: Mapping[str, Any] | None = None) -> bytes:
    """The payload of a table call: each table as an Arrow IPC stream, back to back, with
    ``params`` as JSON in the first one's schema metadata."""
    if not tables:
        raise InvalidInput("a table call sends at least one table")
    sink = pa.BufferOutputStream()
    for index, table in enumerate(tables):
        arrow = _as_arrow(table)
        schema = arrow.schema
        if index == 0 and params is not None:
            try:
                text = json.dumps(dict(params), separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"table call params cannot be encoded as JSON: {type(exc).__name__}") from None
            schema = schema.with_metadata({**(schema.metadata or {}), PARAMS_KEY.encode(): text.encode()})
        with ipc.new_stream(sink, schema) as writer:
            writer.write_table(arrow.replace_schema_metadata(schema.metadata))
    # One copy, into the bytes the client's raw codec takes.
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def table_from_ipc(data: bytes, output: Output = "pyarrow") -> Any:
    """The table an Arrow IPC stream holds, as ``output``: read in place from ``data``."""
    try:
        table = ipc.open_stream(pa.py_buffer(data)).read_all()
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise ProtocolError(f"reply payload is not an Arrow IPC stream: {type(exc).__name__}") from None
    return _as_output(table, output)


def _as_output(table: pa.Table, output: Output) -> Any:
    if output == "pyarrow":
        return table
    if output == "polars":
        import polars

        return polars.from_arrow(table)
    if output == "pandas":
        return table.to_pandas()
    raise ValueError(f"unknown output {output!r}; choose pyarrow, polars or pandas")


def _tables(table: TableLike | Sequence[TableLike]) -> tuple[TableLike, ...]:
    if isinstance(table, (list, tuple)):
        return tuple(table)
    return (table,)


#: Bytes of a call frame besides its payload and entry name (docs/protocol.md).
_HEADER_LEN = 48


def _fitting(client: MoltClient, entry: str, payload: bytes) -> bytes:
    """``payload``, if its frame fits the client's ``max_frame_bytes``; else InvalidInput
    before anything is sent (a table larger than a frame is never cut or half-sent)."""
    frame_len = _HEADER_LEN + len(entry.encode()) + len(payload)
    limit = client.config.max_frame_bytes
    if frame_len > limit:
        raise InvalidInput(
            f"the tables make a frame of {frame_len} bytes, over max_frame_bytes ({limit}): raise it on "
            "the client and the worker (--max-frame-bytes, --ring-bytes), see docs/data-path.md"
        )
    return payload


def _call_payload(
    client: MoltClient, entry: str, sent: Tables | TableLike | Sequence[TableLike]
) -> bytes:
    """The raw payload of a call to ``entry`` sending ``sent`` (a :class:`Tables`, one table
    or a list of them), checked to fit the client's frame limit. What the functions below
    and ``@molt_offload(table=...)`` send."""
    if isinstance(sent, Tables):
        return _fitting(client, entry, table_to_ipc(*sent.tables, params=sent.params))
    return _fitting(client, entry, table_to_ipc(*_tables(sent)))


def _reply_value(reply: bytes) -> Any:
    """The MsgPack value a table entry answered (a summary)."""
    try:
        return msgpack.unpackb(reply, strict_map_key=False)
    except Exception:
        raise ProtocolError("reply payload is not valid msgpack") from None


def call_table(
    client: MoltClient,
    entry: str,
    table: TableLike | Sequence[TableLike],
    *,
    params: Mapping[str, Any] | None = None,
    output: Output = "pyarrow",
    timeout_ms: int | None = None,
    idempotent: bool = False,
) -> Any:
    """Runs ``entry`` on ``table`` (one table, or a list of them) and returns the table it
    answers, as ``output``. Errors are the client's (:class:`~molt_accel.InvalidInput` for a
    table past the worker's limits, naming the limit)."""
    payload = _call_payload(client, entry, Tables(*_tables(table), params=params))
    reply = client.call(entry, payload, codec="raw", timeout_ms=timeout_ms, idempotent=idempotent)
    return table_from_ipc(reply, output)


async def acall_table(
    client: MoltClient,
    entry: str,
    table: TableLike | Sequence[TableLike],
    *,
    params: Mapping[str, Any] | None = None,
    output: Output = "pyarrow",
    timeout_ms: int | None = None,
    idempotent: bool = False,
) -> Any:
    """:func:`call_table` for asyncio (a cancelled task cancels the call in the worker)."""
    payload = _call_payload(client, entry, Tables(*_tables(table), params=params))
    reply = await client.acall(entry, payload, codec="raw", timeout_ms=timeout_ms, idempotent=idempotent)
    return table_from_ipc(reply, output)


def call_table_value(
    client: MoltClient,
    entry: str,
    table: TableLike | Sequence[TableLike],
    *,
    params: Mapping[str, Any] | None = None,
    timeout_ms: int | None = None,
    idempotent: bool = False,
) -> Any:
    """Runs ``entry`` on ``table`` and returns the MsgPack value it answers (a summary)."""
    payload = _call_payload(client, entry, Tables(*_tables(table), params=params))
    return _reply_value(client.call(entry, payload, codec="raw", timeout_ms=timeout_ms, idempotent=idempotent))


async def acall_table_value(
    client: MoltClient,
    entry: str,
    table: TableLike | Sequence[TableLike],
    *,
    params: Mapping[str, Any] | None = None,
    timeout_ms: int | None = None,
    idempotent: bool = False,
) -> Any:
    """:func:`call_table_value` for asyncio."""
    payload = _call_payload(client, entry, Tables(*_tables(table), params=params))
    return _reply_value(await client.acall(entry, payload, codec="raw", timeout_ms=timeout_ms, idempotent=idempotent))
