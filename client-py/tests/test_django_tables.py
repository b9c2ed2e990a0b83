"""``@molt_offload(table=...)`` and ``render=`` with Django's test clients against the real
worker's data-path entries (docs/data-path.md), over both transports."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoapp.settings")
django.setup()

from django.http import HttpResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402

from djangoapp import settings as test_project  # noqa: E402
from molt_accel.arrow import table_from_ipc  # noqa: E402
from molt_accel.django import ARROW_STREAM_CONTENT_TYPE, close_clients, molt_offload, offload_of  # noqa: E402
from molt_accel.django import _TableCall  # noqa: E402


@pytest.fixture(autouse=True)
def molt_accel_settings(transport: str) -> Iterator[None]:
    with override_settings(
        ROOT_URLCONF=test_project.ROOT_URLCONF,
        MIDDLEWARE=test_project.MIDDLEWARE,
        MOLT_ACCEL={**test_project.MOLT_ACCEL, "TRANSPORT": transport, "TIMEOUT_MS": 20_000},
    ):
        yield
    close_clients()


def get(path: str, **query: str) -> HttpResponse:
    if path.startswith("/async/"):
        return asyncio.run(AsyncClient().get(path, query))
    return Client().get(path, query)


def error_of(response: HttpResponse) -> dict[str, str]:
    return json.loads(response.content)["error"]


@pytest.mark.parametrize("path", ["/sync/table/summary", "/async/table/summary"])
def test_a_value_reply_is_the_json_response(path: str) -> None:
    response = get(path, rows="100", min_quantity="6")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    summary = json.loads(response.content)
    # Quantities are id % 10 + 1: odd ones (7, 9) in the north, even ones (6, 8, 10) in the south.
    assert (summary["rows"], summary["kept"]) == (100, 50)
    assert [(group["region"], group["count"]) for group in summary["groups"]] == [("north", 20), ("south", 30)]


def test_one_table_needs_no_tables_wrapper() -> None:
    response = get("/sync/table/summary_without_params", rows="30")
    assert response.status_code == 200
    assert json.loads(response.content)["kept"] == 30


def test_render_shapes_a_value_reply() -> None:
    response = get("/sync/table/summary_rendered", rows="100")
    assert response.status_code == 200
    north = [1.0 + (i % 101) / 100 for i in range(0, 100, 2)]
    south = [1.0 + (i % 101) / 100 for i in range(1, 100, 2)]
    assert json.loads(response.content) == {
        "north": round(sum(north) / len(north), 2),
        "south": round(sum(south) / len(south), 2),
    }


@pytest.mark.parametrize("path", ["/sync/table/transform", "/async/table/transform"])
def test_a_table_reply_is_an_arrow_stream_body(path: str) -> None:
    response = get(path, rows="200", n="4")
    assert response.status_code == 200
    assert response["Content-Type"] == ARROW_STREAM_CONTENT_TYPE
    top = table_from_ipc(response.content)
    assert top.column_names == ["id", "region", "product_id", "category", "quantity", "price", "revenue"]
    assert top.num_rows == 4
    revenues = top.column("revenue").to_pylist()
    assert revenues == sorted(revenues, reverse=True)


def test_render_gets_a_table_reply_as_a_pyarrow_table() -> None:
    response = get("/async/table/transform_rendered", rows="200", n="3")
    assert response.status_code == 200
    expected = table_from_ipc(get("/sync/table/transform", rows="200", n="3").content)
    assert json.loads(response.content) == {"ids": expected.column("id").to_pylist()}


def test_a_response_returned_by_the_view_is_passed_through() -> None:
    response = get("/sync/table/summary")
    assert response.status_code == 400
    assert error_of(response)["message"] == "rows is required"


def test_something_that_is_not_a_table_is_400_before_any_call() -> None:
    response = get("/sync/table/summary_of_a_dict")
    assert response.status_code == 400
    assert error_of(response) == {
        "code": "InvalidInput",
        "message": "a table must be a pyarrow Table or RecordBatch, a polars or a pandas DataFrame, not dict",
    }


def test_the_entrys_invalid_input_is_400_with_its_message() -> None:
    response = get("/sync/table/summary_missing_a_column")
    assert response.status_code == 400
    assert error_of(response)["message"] == 'sales has no column "price"'


def test_tables_over_the_frame_limit_are_400_and_nothing_is_sent() -> None:
    with override_settings(MOLT_ACCEL={**test_project.MOLT_ACCEL, "MAX_FRAME_BYTES": 64 * 1024}):
        refused = get("/sync/table/summary", rows="10000")
        assert refused.status_code == 400
        assert "over max_frame_bytes (65536)" in error_of(refused)["message"]
        # The connection is as it was: a table that fits goes through on it.
        assert get("/sync/table/summary", rows="100").status_code == 200


def test_a_table_reply_read_as_a_value_is_a_protocol_error() -> None:
    response = get("/sync/table/transform_read_as_a_value", rows="20")
    assert response.status_code == 500
    assert error_of(response)["code"] == "ProtocolError"


def test_render_on_a_plain_call_can_answer_any_response() -> None:
    response = get("/sync/echo_rendered", b="2", a="1")
    assert response.status_code == 418
    assert response.content == b"['a', 'b']"


def test_the_offload_of_a_table_view_says_so() -> None:
    from djangoapp import table_views

    offload = offload_of(table_views.transform)
    assert offload is not None
    assert (offload.entry, offload.codec, offload.table) == ("table_transform", "raw", "table")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"table": "rows"}, "table must be 'value' or 'table'"),
        ({"table": "value", "codec": "json"}, "table= sends the tables as Arrow IPC"),
        ({"table": "value", "passthrough": True}, "passthrough=True and table= do not combine"),
        ({"render": dict, "passthrough": True}, "passthrough=True answers the entry's bytes undecoded"),
    ],
)
def test_options_that_do_not_combine_fail_at_decoration(options: dict[str, object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        molt_offload(entry="table_summary", **options)  # type: ignore[arg-type]


def test_a_table_view_without_pyarrow_fails_at_decoration(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match=r"install molt_accel\[arrow\]"):
        _TableCall("value", None)
