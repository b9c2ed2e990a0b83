"""Seeded request generators for the equality tests: valid query strings that cover the
contract's parameter space (including cursors taken from a previous reply), and invalid
ones that break each rule once."""

from __future__ import annotations

import random
from urllib.parse import urlencode

from demoapp import contract


def _user_id(rng: random.Random) -> int:
    return rng.choice([1, 2, 7, 42, contract.USER_ID_MAX, rng.randint(1, 1000), rng.randint(1, contract.USER_ID_MAX)])


def _q(rng: random.Random) -> str | None:
    word = rng.choice(contract.WORDS)
    return rng.choice(
        [
            None,
            None,
            word,
            word[: rng.randint(1, len(word))],
            word.upper(),
            f"{word} {rng.choice(contract.WORDS)}",
            "",
            " ",
            "zzzz",
            "é" * contract.Q_MAX_CHARS,
        ]
    )


def _rows(rng: random.Random) -> int | None:
    # Mostly small so the CPython side stays fast; a few large pages and the extremes.
    return rng.choices(
        [None, 0, 1, rng.randint(2, 300), rng.randint(300, 3000), 20_000],
        weights=[3, 1, 1, 6, 3, 1],
    )[0]


def list_items_params(rng: random.Random) -> dict[str, object]:
    """One valid `list_items` query (as a dict of query parameters; None = left out)."""
    params: dict[str, object | None] = {
        "user_id": _user_id(rng),
        "q": _q(rng),
        "status": rng.choice([None, "open", "closed", "all"]),
        "limit": rng.choice([None, 1, 2, rng.randint(1, 60), contract.LIMIT_MAX]),
        "rows": _rows(rng),
    }
    return {name: value for name, value in params.items() if value is not None}


def query_string(params: dict[str, object]) -> str:
    return urlencode({name: str(value) for name, value in params.items()})


INVALID_LIST_ITEMS = [
    "",
    "limit=10",
    "user_id=",
    "user_id=abc",
    "user_id=0",
    "user_id=-1",
    "user_id=1.5",
    f"user_id={contract.USER_ID_MAX + 1}",
    "user_id=99999999999999999999999999",
    "user_id=%EF%BC%91",  # a full-width digit one: not an ASCII integer
    "user_id=1&limit=0",
    "user_id=1&limit=501",
    "user_id=1&limit=",
    "user_id=1&limit=ten",
    "user_id=1&limit=1e2",
    "user_id=1&status=pending",
    "user_id=1&status=OPEN",
    "user_id=1&status=",
    "user_id=1&cursor=",
    "user_id=1&cursor=bogus",
    "user_id=1&cursor=v1:",
    "user_id=1&cursor=v1:0",
    "user_id=1&cursor=v1:007",
    "user_id=1&cursor=v1:-5",
    "user_id=1&cursor=v1:200001",
    "user_id=1&cursor=v2:10",
    "user_id=1&rows=-1",
    "user_id=1&rows=200001",
    "user_id=1&rows=2k",
    "user_id=1&q=" + "a" * (contract.Q_MAX_CHARS + 1),
    "user_id=1&q=" + "%C3%A9" * (contract.Q_MAX_CHARS + 1),
]


def compute_params(rng: random.Random) -> dict[str, object]:
    """One valid `compute` query; n kept small enough for CPython to answer quickly."""
    params: dict[str, object | None] = {
        "n": rng.choice([1, 2, rng.randint(3, 5000), rng.randint(5000, 30_000)]),
        "seed": rng.choice([None, 0, rng.randint(1, 1000), rng.randint(0, contract.COMPUTE_SEED_MAX)]),
        "buckets": rng.choice([None, 1, rng.randint(2, 99), contract.COMPUTE_BUCKETS_MAX]),
    }
    return {name: value for name, value in params.items() if value is not None}


INVALID_COMPUTE = [
    "",
    "seed=1",
    "n=0",
    "n=-3",
    "n=abc",
    f"n={contract.COMPUTE_N_MAX + 1}",
    "n=10&seed=-1",
    f"n=10&seed={contract.COMPUTE_SEED_MAX + 1}",
    "n=10&seed=18446744073709551616",
    "n=10&buckets=0",
    f"n=10&buckets={contract.COMPUTE_BUCKETS_MAX + 1}",
    "n=10&buckets=",
]
