"""The query string → payload step both paths share: it only changes representation and
leaves every judgement to the contract."""

from __future__ import annotations

from django.http import QueryDict

from demoapp.query import compute_payload, list_items_payload


def test_integer_fields_become_ints_and_strings_stay_strings() -> None:
    payload = list_items_payload(QueryDict("user_id=7&limit=20&rows=0&q=42&status=open&cursor=v1:9"))
    assert payload == {"user_id": 7, "limit": 20, "rows": 0, "q": "42", "status": "open", "cursor": "v1:9"}


def test_missing_fields_are_left_to_the_contract_defaults() -> None:
    assert list_items_payload(QueryDict("user_id=3")) == {"user_id": 3}
    assert compute_payload(QueryDict("")) == {}


def test_unknown_parameters_are_ignored_and_the_last_repeat_wins() -> None:
    assert compute_payload(QueryDict("n=5&n=6&debug=1&seed=-2")) == {"n": 6, "seed": -2}


def test_text_that_is_not_a_plain_ascii_integer_is_passed_on_unchanged() -> None:
    for text in ("", " 1", "1 ", "+1", "1_000", "1e3", "0x10", "1.0", "\uff11", "٣"):
        assert list_items_payload({"limit": text}) == {"limit": text}


def test_integers_beyond_64_bits_are_passed_on_as_text() -> None:
    assert compute_payload(QueryDict("n=18446744073709551615")) == {"n": 2**64 - 1}
    assert compute_payload(QueryDict("n=18446744073709551616")) == {"n": "18446744073709551616"}
    assert compute_payload(QueryDict("seed=-9223372036854775809")) == {"seed": "-9223372036854775809"}
