"""`molt_accel.querysets` against the real worker and PostgreSQL: what the worker answers is
what Django gives for the same queryset, in each format; what cannot be offloaded is refused
before anything is sent, naming why; SQL the manifest does not export is refused by the worker."""

from __future__ import annotations

import datetime

import pytest
from django.db.models import Count, F
from django.http import JsonResponse
from molt_accel import InvalidInput
from molt_accel.querysets import OffloadedQuery, QueryNotOffloadable, compile_queryset

from demoapp.models import Item
from demoapp.molt_queries import items_counts, items_page

AFTER = (datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.timezone.utc), 20_000)


@pytest.mark.parametrize("status", [None, "closed"])
@pytest.mark.parametrize("after", [None, AFTER])
def test_rows_are_what_django_gives(transport: str, status: str | None, after: object) -> None:
    queryset = items_page.build(2, status, 120, after)
    assert items_page.rows(2, status, 120, after) == list(queryset)


def test_json_is_the_body_a_json_response_of_the_rows_carries(transport: str) -> None:
    rows = list(items_page.build(3, "open", 75, None))
    assert items_page.json(3, "open", 75, None) == JsonResponse(rows, safe=False).content


def test_aggregates_come_back_with_their_keys() -> None:
    assert sorted(items_counts.rows(1), key=lambda row: row["status"]) == sorted(
        Item.objects.filter(user_id=1).values("status").annotate(count=Count("id")).order_by(),
        key=lambda row: row["status"],
    )


def test_arrow_is_an_ipc_stream() -> None:
    stream = items_page.arrow_ipc(1, None, 10, None)
    # An Arrow IPC stream opens with the continuation marker of its schema message.
    assert stream[:4] == b"\xff\xff\xff\xff" and len(stream) > 200


def test_an_empty_filter_is_answered_without_a_call() -> None:
    empty = OffloadedQuery("empty", lambda: Item.objects.filter(id__in=[]).values("id"), samples=[{}])
    assert empty.rows() == [] and empty.json() == b"[]"


@pytest.mark.parametrize(
    ("build", "why"),
    [
        (lambda: Item.objects.all()[:5], "model instances are built in Python"),
        (lambda: Item.objects.values_list("id", named=True), "named=True"),
        (lambda: Item.objects.select_for_update().values("id"), "select_for_update"),
        (lambda: Item.objects.prefetch_related("user").values("id"), "prefetch_related"),
        (lambda: Item.objects.values("id").union(Item.objects.values("id")), "union"),
        (lambda: [1, 2], "not a QuerySet"),
        (lambda: Item.objects.extra(where=["title <> %s"], params=[b"x"]).values("id"), "type bytes"),
    ],
)
def test_what_cannot_be_offloaded_is_refused_naming_why(build: object, why: str) -> None:
    with pytest.raises(QueryNotOffloadable, match=why):
        compile_queryset(build())  # type: ignore[operator]


def test_slices_and_literal_percents_become_parameters_and_plain_percents() -> None:
    compiled = compile_queryset(Item.objects.filter(title__contains="50%").values("id")[10:30])
    assert compiled.sql.endswith("LIMIT $2 OFFSET $3")
    assert compiled.params[-2:] == (20, 10)
    assert "%%" not in compiled.sql


def test_sql_the_manifest_does_not_export_is_refused_by_the_worker(transport: str) -> None:
    rogue = OffloadedQuery(
        "items_page", lambda: Item.objects.values("id", doubled=F("score") * 2)[:3], samples=[{}]
    )
    with pytest.raises(InvalidInput, match="not one the manifest exports"):
        rogue.rows()
