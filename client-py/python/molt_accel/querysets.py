"""Django querysets run by the worker, without writing Rust.

Django stays the query builder: a function builds a ``values()`` or ``values_list()``
queryset from its arguments, Django compiles it to SQL and parameters, and the worker's
``querysets`` entry (molt-db's ``run_queryset``) runs it on its own connection pool and
answers the rows as MsgPack, as the JSON bytes a ``JsonResponse`` of them would carry, or as an
Arrow IPC stream::

    from molt_accel.querysets import offloaded_query

    @offloaded_query("open_items", samples=[{"user_id": 1, "limit": 50}])
    def open_items(user_id: int, limit: int):
        return Item.objects.filter(user_id=user_id, status="open").values("id", "title")[:limit]

    rows = open_items.rows(user_id=7, limit=20)      # what list(queryset) would give
    body = open_items.json(user_id=7, limit=20)      # the bytes of JsonResponse(rows, safe=False)

The worker runs only SQL the application exported: ``manage.py molt_queries`` compiles every
registered query with each of its ``samples`` (one per shape of SQL its arguments give: with and
without an optional filter, say) and writes the statements into the exports manifest the
worker reads; a call whose SQL is not among them is refused. Slices become ``LIMIT``/``OFFSET``
parameters, so one statement serves every page size. The statements run read-only.

What cannot be offloaded raises :class:`QueryNotOffloadable`, naming why, before anything is
sent: model instances (not ``values()``), ``values_list(named=True)``, ``select_for_update()``,
``prefetch_related()``, ``union()`` and friends, another database than PostgreSQL, columns
whose field converts values in Python (``from_db_value``), and parameters of a type the worker
does not bind. Failed calls raise the client's usual :class:`~molt_accel.MoltError` kinds:
``Unavailable`` when the database is down, ``Busy`` when no connection frees up in time.
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgpack
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import JSONField, QuerySet
from django.db.models.query import FlatValuesListIterable, ValuesIterable, ValuesListIterable

from ._client import MoltClient

__all__ = [
    "QueryNotOffloadable",
    "OffloadedQuery",
    "CompiledQuery",
    "offloaded_query",
    "registered_queries",
    "exported_queries",
    "QUERYSETS_ENTRY",
]

#: The worker entry the adapter calls unless a query names another.
QUERYSETS_ENTRY = "querysets"

Shape = Literal["values", "values_list", "flat"]
_SHAPES: Mapping[type, Shape] = {
    ValuesIterable: "values",
    ValuesListIterable: "values_list",
    FlatValuesListIterable: "flat",
}
_PLACEHOLDER = re.compile(r"%(.)", re.DOTALL)


class QueryNotOffloadable(TypeError):
    """The queryset cannot run in the worker; the message says why. Raised before any call."""


@dataclass(frozen=True)
class CompiledQuery:
    """A queryset compiled for the worker: PostgreSQL SQL with ``$n`` placeholders, the
    parameters in order, the row keys and the shape of the rows."""

    sql: str
    params: tuple[Any, ...]
    columns: tuple[str, ...]
    shape: Shape
    #: Turns a column's wire value (ISO text for dates, decimal text) into the Python value
    #: Django gives; ``None`` for a column whose wire value is already that.
    converters: tuple[Callable[[Any], Any] | None, ...]
    #: Django found the result empty without asking the database (``filter(id__in=[])``).
    empty: bool = False

    def statement(self) -> dict[str, Any]:
        """The manifest's record of this statement (``settings.database.queries``)."""
        return {"sql": self.sql, "columns": list(self.columns), "shape": self.shape}


class OffloadedQuery:
    """A registered queryset builder; see the module docstring. Made by :func:`offloaded_query`."""

    def __init__(
        self,
        name: str,
        build: Callable[..., QuerySet[Any, Any]],
        samples: Sequence[Mapping[str, Any]],
        *,
        entry: str = QUERYSETS_ENTRY,
        timeout_ms: int | None = None,
        transport: str | None = None,
    ) -> None:
        if not samples:
            raise ValueError(f"offloaded query {name!r} needs at least one sample of its arguments")
        self.name = name
        self.build = build
        self.samples = tuple(dict(sample) for sample in samples)
        self.entry = entry
        self.timeout_ms = timeout_ms
        self.transport = transport
        self.__doc__ = build.__doc__

    def __repr__(self) -> str:
        return f"<OffloadedQuery {self.name}>"

    def compile(self, *args: Any, **kwargs: Any) -> CompiledQuery:
        """The queryset ``build(*args, **kwargs)`` returns, compiled for the worker."""
        queryset = self.build(*args, **kwargs)
        return compile_queryset(queryset, self.name)

    def statements(self) -> list[dict[str, Any]]:
        """Every distinct statement the samples compile to, for the manifest."""
        statements: list[dict[str, Any]] = []
        for sample in self.samples:
            compiled = self.compile(**sample)
            if compiled.empty:
                raise QueryNotOffloadable(f"query {self.name}: sample {sample} compiles to no SQL (an empty result)")
            if compiled.statement() not in statements:
                statements.append(compiled.statement())
        return statements

    # The calls. Each compiles first, so an unoffloadable queryset fails before it is sent.

    def rows(self, *args: Any, **kwargs: Any) -> list[Any]:
        """The rows, as ``list(queryset)`` gives them."""
        compiled = self.compile(*args, **kwargs)
        if compiled.empty:
            return []
        reply = self._client().call(self.entry, _call(self.name, compiled, "rows"), timeout_ms=self.timeout_ms)
        return _rows(reply, compiled)

    async def arows(self, *args: Any, **kwargs: Any) -> list[Any]:
        """:meth:`rows` from async code."""
        compiled = self.compile(*args, **kwargs)
        if compiled.empty:
            return []
        payload = _call(self.name, compiled, "rows")
        reply = await self._client().acall(self.entry, payload, timeout_ms=self.timeout_ms)
        return _rows(reply, compiled)

    def json(self, *args: Any, **kwargs: Any) -> bytes:
        """The JSON bytes ``JsonResponse(list(queryset), safe=False)`` would carry."""
        compiled = self.compile(*args, **kwargs)
        if compiled.empty:
            return b"[]"
        payload = _call(self.name, compiled, "json")
        result: bytes = self._client().call(self.entry, payload, timeout_ms=self.timeout_ms, codec="json_body")
        return result

    async def ajson(self, *args: Any, **kwargs: Any) -> bytes:
        """:meth:`json` from async code."""
        compiled = self.compile(*args, **kwargs)
        if compiled.empty:
            return b"[]"
        payload = _call(self.name, compiled, "json")
        result: bytes = await self._client().acall(self.entry, payload, timeout_ms=self.timeout_ms, codec="json_body")
        return result

    def arrow_ipc(self, *args: Any, **kwargs: Any) -> bytes:
        """The rows as an Arrow IPC stream, one column per row key (``pyarrow.ipc.open_stream``
        reads it). An empty result is a stream the worker still writes, so it has a schema."""
        compiled = self.compile(*args, **kwargs)
        if compiled.empty:
            raise QueryNotOffloadable(f"query {self.name}: Django found the result empty without a query")
        payload = _call(self.name, compiled, "arrow")
        result: bytes = self._client().call(self.entry, payload, timeout_ms=self.timeout_ms, codec="arrow_ipc")
        return result

    def _client(self) -> MoltClient:
        from .django import get_client

        return get_client(self.transport)


_registry: dict[str, OffloadedQuery] = {}


def offloaded_query(
    name: str,
    *,
    samples: Sequence[Mapping[str, Any]],
    entry: str = QUERYSETS_ENTRY,
    timeout_ms: int | None = None,
    transport: str | None = None,
) -> Callable[[Callable[..., QuerySet[Any, Any]]], OffloadedQuery]:
    """Registers a queryset builder under ``name`` (see the module docstring). ``samples``
    are keyword arguments of the builder, one per shape of SQL it can produce; ``timeout_ms``
    and ``transport`` default to the ``MOLT_ACCEL`` settings. Names are unique per process.

    Put registrations in an app's ``molt_queries.py`` module: ``manage.py molt_queries`` imports
    that module of every installed app."""

    def register(build: Callable[..., QuerySet[Any, Any]]) -> OffloadedQuery:
        if name in _registry and _registry[name].build is not build:
            raise ValueError(f"an offloaded query named {name!r} is registered already")
        query = OffloadedQuery(name, build, samples, entry=entry, timeout_ms=timeout_ms, transport=transport)
        _registry[name] = query
        return query

    return register


def registered_queries() -> dict[str, OffloadedQuery]:
    """Every query registered in this process, by name."""
    return dict(_registry)


def exported_queries(queries: Iterable[OffloadedQuery]) -> dict[str, dict[str, Any]]:
    """The manifest's ``settings.database.queries`` for ``queries``."""
    return {query.name: {"statements": query.statements()} for query in sorted(queries, key=lambda q: q.name)}


def compile_queryset(queryset: QuerySet[Any, Any], name: str = "queryset") -> CompiledQuery:
    """``queryset`` compiled for the worker, or :class:`QueryNotOffloadable` saying why not."""
    if not isinstance(queryset, QuerySet):
        raise QueryNotOffloadable(f"query {name}: the builder returned {type(queryset).__name__}, not a QuerySet")
    shape = _SHAPES.get(queryset._iterable_class)
    if shape is None:
        if queryset._iterable_class.__name__ == "NamedValuesListIterable":
            why = "values_list(named=True) builds its rows in Python: use values_list() or values()"
        else:
            why = "model instances are built in Python: offload a values() or values_list() queryset"
        raise QueryNotOffloadable(f"query {name}: {why}")
    vendor = connections[queryset.db].vendor
    if vendor != "postgresql":
        raise QueryNotOffloadable(f"query {name}: the worker runs PostgreSQL SQL; this queryset is for {vendor}")
    if queryset._prefetch_related_lookups:
        raise QueryNotOffloadable(f"query {name}: prefetch_related() runs more queries in Python")
    query = queryset.query.chain()
    if query.select_for_update:
        raise QueryNotOffloadable(f"query {name}: select_for_update() takes locks; the worker's queries are read-only")
    if query.combinator:
        raise QueryNotOffloadable(f"query {name}: {query.combinator}() querysets are not supported")
    low, high = query.low_mark, query.high_mark
    query.clear_limits()
    compiler = query.get_compiler(using=queryset.db)
    if query.selected:
        columns = tuple(query.selected)
    else:
        columns = (*query.extra_select, *query.values_select, *query.annotation_select)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return CompiledQuery("", (), columns, shape, (), empty=True)
    converters = tuple(_converter(name, expression) for expression, _sql, _alias in compiler.select)
    params = tuple(params)
    if high is not None:
        sql += " LIMIT %s"
        params += (high - low,)
    if low:
        sql += " OFFSET %s"
        params += (low,)
    return CompiledQuery(_numbered(sql, name), tuple(_wire_param(p, name) for p in params), columns, shape, converters)


def _numbered(sql: str, name: str) -> str:
    """Django's ``%s`` placeholders as PostgreSQL's ``$1, $2, ...`` (``%%`` is a literal ``%``)."""
    position = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal position
        if match.group(1) == "%":
            return "%"
        if match.group(1) == "s":
            position += 1
            return f"${position}"
        raise QueryNotOffloadable(f"query {name}: the SQL holds a placeholder %{match.group(1)} Django does not write")

    return _PLACEHOLDER.sub(replace, sql)


def _wire_param(value: Any, name: str) -> Any:
    """A parameter as the worker binds it (as text the server parses for the parameter's type)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    raise QueryNotOffloadable(f"query {name}: a parameter of type {type(value).__name__} cannot be sent to the worker")


def _converter(name: str, expression: Any) -> Callable[[Any], Any] | None:
    field = getattr(expression, "output_field", None)
    if field is None:
        return None
    internal = field.get_internal_type()
    if isinstance(field, JSONField):
        return _from_json
    if hasattr(field, "from_db_value"):
        raise QueryNotOffloadable(
            f"query {name}: column {getattr(field, 'name', internal)} ({type(field).__name__}) converts its values in Python"
        )
    return _CONVERTERS.get(internal)


def _from_json(value: Any) -> Any:
    return None if value is None else json.loads(value)


def _optional(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else parse(value)


# The wire carries these as text (molt-db's rows format); Django gives these Python types.
_CONVERTERS: Mapping[str, Callable[[Any], Any]] = {
    "DecimalField": _optional(decimal.Decimal),
    "DateField": _optional(datetime.date.fromisoformat),
    # A naive timestamp (USE_TZ = False); aware ones come as MsgPack timestamps.
    "DateTimeField": _optional(datetime.datetime.fromisoformat),
    "TimeField": _optional(datetime.time.fromisoformat),
    "UUIDField": _optional(uuid.UUID),
}


def _call(name: str, compiled: CompiledQuery, format: str) -> dict[str, Any]:
    return {"query": name, "sql": compiled.sql, "params": list(compiled.params), "format": format}


def _rows(reply: Any, compiled: CompiledQuery) -> list[Any]:
    """The reply's rows with the Python types Django gives: timestamps (MsgPack's timestamp
    extension) as aware UTC datetimes, text-carried columns through their converters."""
    convert = compiled.converters
    needs_conversion = any(convert)
    rows: list[Any] = []
    if compiled.shape == "values":
        for row in reply:
            for index, key in enumerate(compiled.columns):
                row[key] = _value(row[key], convert[index] if needs_conversion else None)
            rows.append(row)
    elif compiled.shape == "values_list":
        for row in reply:
            rows.append(tuple(_value(value, convert[i] if needs_conversion else None) for i, value in enumerate(row)))
    else:
        only = convert[0] if convert else None
        rows = [_value(value, only) for value in reply]
    return rows


def _value(value: Any, convert: Callable[[Any], Any] | None) -> Any:
    if isinstance(value, msgpack.Timestamp):
        return value.to_datetime()
    if convert is not None:
        return convert(value)
    return value
