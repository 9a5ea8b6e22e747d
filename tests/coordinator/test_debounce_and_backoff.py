"""TTL due times, failure backoff and debounce: pure arithmetic, tested with plain values."""

from __future__ import annotations

import pytest

from stagewatch.daemon.backoff import backoff_s, hold_back
from stagewatch.daemon.scheduler import Burst, start_burst
from stagewatch.ttl import ttl_due_at


def test_ttl_stage_is_due_ttl_after_its_entry() -> None:
    assert ttl_due_at(entry_mtime=1000.0, ttl_s=60.0, now=1010.0) == 1060.0


def test_ttl_stage_without_entry_is_due_now() -> None:
    assert ttl_due_at(entry_mtime=None, ttl_s=60.0, now=1010.0) == 1010.0


def test_overdue_stage_is_due_once_in_the_past_not_per_missed_period() -> None:
    # A week-long suspend: one due time, in the past, so one run.
    assert ttl_due_at(entry_mtime=0.0, ttl_s=60.0, now=7 * 86400.0) == 60.0


@pytest.mark.parametrize(("failures", "expected"), [(0, 0.0), (1, 30.0), (2, 60.0), (3, 120.0), (4, 240.0)])
def test_backoff_doubles_from_thirty_seconds(failures: int, expected: float) -> None:
    assert backoff_s(failures, ttl_s=None) == expected


def test_backoff_is_capped_at_the_ttl() -> None:
    assert backoff_s(10, ttl_s=300.0) == 300.0


def test_backoff_survives_very_many_failures() -> None:
    assert backoff_s(10_000, ttl_s=None) > 0


def test_burst_acts_after_the_quiet_time() -> None:
    burst = start_burst(10.0).add(10.05)
    assert burst.due_at(quiet_s=0.1) == pytest.approx(10.15)


def test_steady_writer_cannot_delay_past_the_cap() -> None:
    burst = start_burst(10.0)
    for tick in range(1, 100):
        burst = burst.add(10.0 + tick * 0.05)
    assert burst.due_at(quiet_s=0.1, cap_s=2.0) == 12.0


def test_cap_is_never_shorter_than_the_quiet_time() -> None:
    assert Burst(10.0, 10.0).due_at(quiet_s=5.0, cap_s=2.0) == 15.0


def test_failed_stage_with_unchanged_key_waits_for_a_change() -> None:
    assert hold_back("k", "k", ttl_s=None, retry_at=None, now=0.0) is not None


def test_failed_stage_runs_again_once_its_key_changes() -> None:
    assert hold_back("k", "k2", ttl_s=None, retry_at=None, now=0.0) is None


def test_failed_ttl_stage_waits_for_its_backoff() -> None:
    assert hold_back("k", "k", ttl_s=60.0, retry_at=130.0, now=100.0) == "failed last time; retrying in 30s"
    assert hold_back("k", "k", ttl_s=60.0, retry_at=130.0, now=130.0) is None


def test_stage_with_a_missing_input_is_held_until_it_appears() -> None:
    assert hold_back(None, None, ttl_s=None, retry_at=None, now=0.0) is not None
    assert hold_back(None, "k", ttl_s=None, retry_at=None, now=0.0) is None
