"""decide() and the TTL rule, with plain values: the entry's age, a clock that stepped back."""

from __future__ import annotations

import pytest

from stagewatch.entry import Entry
from stagewatch.freshness import (
    EntryFromTheFuture,
    Fingerprint,
    TtlExpired,
    decide,
)
from stagewatch.stage import Stage
from stagewatch.ttl import ttl_expired

pytestmark = pytest.mark.timeout(10)

KEY = "a" * 64
NOW = 1_700_000_000.0


def fetch(ttl_s: float = 3600.0) -> Stage:
    return Stage(name="fetch", command=("true",), ttl_s=ttl_s)


def fingerprint() -> Fingerprint:
    return Fingerprint(KEY, ("(argv)", "b" * 64), (), (), ())


@pytest.mark.parametrize(
    ("mtime", "expired"),
    [
        (NOW - 10, False),
        (NOW, False),
        (NOW - 3599.9, False),
        (NOW - 3600, True),
        (NOW - 90_000, True),
        (NOW + 0.5, True),
        (NOW + 86_400, True),
    ],
)
def test_ttl_expired_counts_an_entry_from_the_future_as_expired(mtime: float, expired: bool) -> None:
    assert ttl_expired(mtime, 3600.0, NOW) is expired


def test_a_young_entry_is_fresh() -> None:
    decision = decide(fetch(), Entry(KEY, NOW - 60), fingerprint(), (), NOW)
    assert not decision.run
    assert decision.ttl_left_s == pytest.approx(3540.0)


def test_an_old_entry_is_expired() -> None:
    decision = decide(fetch(), Entry(KEY, NOW - 7200), fingerprint(), (), NOW)
    assert decision.reasons == (TtlExpired(7200.0, 3600.0),)


def test_an_entry_dated_in_the_future_is_expired_and_says_why() -> None:
    decision = decide(fetch(), Entry(KEY, NOW + 600), fingerprint(), (), NOW)
    assert decision.run
    assert decision.reasons == (EntryFromTheFuture(600.0),)
    assert (
        str(decision.reasons[0]) == "ttl expired: the entry is dated 10m in the future (clock stepped back?)"
    )
    assert decision.ttl_left_s == 0.0


def test_an_entry_from_the_future_does_not_matter_without_a_ttl() -> None:
    stage = Stage(name="render", command=("true",), inputs=("a.md",))
    decision = decide(stage, Entry(KEY, NOW + 600), fingerprint(), (), NOW)
    assert not decision.run
