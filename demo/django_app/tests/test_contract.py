"""The pure-Python demo contract (`demoapp/contract.py`) against `docs/demo-contract.md`."""

from __future__ import annotations

import datetime
import doctest
import importlib.util
import random
from pathlib import Path

import pytest

from demoapp import contract
from demoapp.contract import ContractError, compute, list_items

GOLDEN_SCRIPT = Path(__file__).resolve().parents[3] / "demo" / "worker_app" / "tests" / "fixtures" / "gen_golden.py"


def _error(call, payload) -> ContractError:
    with pytest.raises(ContractError) as caught:
        call(payload)
    return caught.value


def test_module_examples_hold() -> None:
    assert doctest.testmod(contract).failed == 0


def test_splitmix64_matches_the_reference_stream() -> None:
    assert contract.splitmix64_output(0, 0) == 0xE220A8397B1DCDAF
    assert contract.splitmix64_output(0, 1) == 0x6E789E6AA1B965F4


def test_created_at_agrees_with_the_calendar() -> None:
    rng = random.Random(5)
    for epoch in [0, 951_782_400, 4_102_444_799] + [rng.randrange(0, 2**35) for _ in range(2000)]:
        expected = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert contract.created_at_iso(epoch) == expected


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({}, "user_id", "user_id is required"),
        ({"user_id": True}, "user_id", "user_id must be an integer between 1 and 2147483647"),
        ({"user_id": 1, "q": "x" * 101}, "q", "q must be a string of at most 100 characters"),
        ({"user_id": 1, "status": "Open"}, "status", "status must be one of open, closed, all"),
        ({"user_id": 1, "limit": 2.0}, "limit", "limit must be an integer between 1 and 500"),
        ({"user_id": 1, "cursor": "v1:0"}, "cursor", "cursor must be the next_cursor of a previous reply"),
        ({"user_id": 1, "cursor": 3}, "cursor", "cursor must be the next_cursor of a previous reply"),
        ({"user_id": 1, "rows": 200_001}, "rows", "rows must be an integer between 0 and 200000"),
        (["user_id", 1], "payload", "payload must be a map"),
    ],
)
def test_list_items_names_the_faulty_field(payload, field, message) -> None:
    error = _error(list_items, payload)
    assert (error.field, error.message) == (field, message)


def test_fields_are_checked_in_contract_order() -> None:
    assert _error(list_items, {"rows": -1, "limit": 0, "user_id": 1, "q": 1}).field == "q"


def test_items_come_newest_first_with_the_contract_key_order() -> None:
    page = list_items({"user_id": 21, "rows": 300, "limit": 300})
    assert list(page) == ["items", "next_cursor", "counts"]
    assert list(page["counts"]) == ["open", "closed"]
    assert [list(item) for item in page["items"][:1]] == [["id", "created_at", "status", "title", "score", "unread"]]
    ids = [item["id"] for item in page["items"]]
    assert ids == list(range(300, 0, -1))
    stamps = [item["created_at"] for item in page["items"]]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == 300


def test_cursor_paging_walks_every_matching_row_exactly_once() -> None:
    request = {"user_id": 22, "q": "Er", "status": "closed", "limit": 9, "rows": 2500}
    seen: list[int] = []
    page = list_items(request)
    expected = page["counts"]["closed"]
    while True:
        for item in page["items"]:
            assert item["status"] == "closed" and "er" in item["title"]
            seen.append(item["id"])
        if page["next_cursor"] is None:
            break
        page = list_items({**request, "cursor": page["next_cursor"]})
    assert expected > 9
    assert len(seen) == expected == len(set(seen))
    assert seen == sorted(seen, reverse=True)


def test_counts_cover_every_q_match_whatever_the_status_and_cursor() -> None:
    everything = list_items({"user_id": 23, "rows": 800, "limit": 500, "q": "a"})
    later = list_items({"user_id": 23, "rows": 800, "q": "A", "status": "open", "cursor": "v1:100"})
    assert later["counts"] == everything["counts"]
    assert all(item["id"] < 100 and item["status"] == "open" for item in later["items"])


def test_non_ascii_q_matches_nothing_and_empty_q_matches_everything() -> None:
    assert list_items({"user_id": 24, "rows": 100, "q": "ä"})["counts"] == {"open": 0, "closed": 0}
    assert list_items({"user_id": 24, "rows": 100, "q": ""}) == list_items({"user_id": 24, "rows": 100})


def test_compute_agrees_with_its_values_one_by_one() -> None:
    values = [contract.splitmix64_output(77, k) % contract.COMPUTE_VALUE_RANGE for k in range(999)]
    result = compute({"n": 999, "seed": 77, "buckets": 4})
    assert list(result) == ["n", "seed", "sum", "min", "max", "mean", "histogram"]
    assert (result["sum"], result["min"], result["max"]) == (sum(values), min(values), max(values))
    assert result["mean"] == sum(values) / 999
    assert result["histogram"] == [sum(1 for v in values if v * 4 // 1_000_000 == b) for b in range(4)]


def test_compute_names_the_faulty_field() -> None:
    assert _error(compute, {"n": 1, "seed": 2**63}).message == "seed must be an integer between 0 and 9223372036854775807"
    assert _error(compute, {"n": 1, "buckets": None, "seed": -1}).field == "seed"


def test_compute_stops_when_asked() -> None:
    polls: list[int] = []

    def stop_on_third_poll() -> bool:
        polls.append(1)
        return len(polls) == 3

    with pytest.raises(InterruptedError):
        compute({"n": 1_000_000}, should_stop=stop_on_third_poll)
    assert len(polls) == 3


def test_cost_knobs_cap_and_ignore_garbage(monkeypatch) -> None:
    monkeypatch.setenv("MOLT_FAKE_DB_DELAY_MS", " 5 ")
    monkeypatch.setenv("MOLT_FAKE_DB_DECODE_US_PER_ROW", "9" * 30)
    monkeypatch.setenv("MOLT_FAKE_DB_CPU_ITERS", "-3")
    contract.cost_knobs.cache_clear()
    try:
        assert contract.cost_knobs() == contract.CostKnobs(delay_ms=5, decode_us_per_row=1000, cpu_iters_per_row=0)
    finally:
        contract.cost_knobs.cache_clear()


def test_cost_knobs_change_the_cost_not_the_answer(monkeypatch) -> None:
    request = {"user_id": 25, "rows": 50, "q": "i"}
    plain = list_items(request)
    monkeypatch.setenv("MOLT_FAKE_DB_DELAY_MS", "1")
    monkeypatch.setenv("MOLT_FAKE_DB_DECODE_US_PER_ROW", "1")
    monkeypatch.setenv("MOLT_FAKE_DB_CPU_ITERS", "3")
    contract.cost_knobs.cache_clear()
    try:
        assert list_items(request) == plain
    finally:
        contract.cost_knobs.cache_clear()


def test_golden_fixture_is_what_the_reference_writes() -> None:
    spec = importlib.util.spec_from_file_location("gen_golden", GOLDEN_SCRIPT)
    assert spec is not None and spec.loader is not None
    gen_golden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_golden)
    assert gen_golden.FIXTURE.read_text() == gen_golden.build(), "run demo/worker_app/tests/fixtures/gen_golden.py"
