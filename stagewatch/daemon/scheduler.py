"""Decide when things are due, as pure arithmetic on times: failure backoff and debounce (a TTL
stage's due time is freshness.ttl_due_at, the one rule build and the daemon share)."""

from __future__ import annotations

from dataclasses import dataclass

from stagewatch.durations import format_duration

BACKOFF_FIRST_S = 30.0
DEBOUNCE_CAP_S = 2.0


def backoff_s(failures: int, ttl_s: float | None) -> float:
    """Wait after the n-th failure in a row: 30 s, 1 min, 2 min, ... capped at ttl (if any)."""
    if failures <= 0:
        return 0.0
    delay = BACKOFF_FIRST_S * 2.0 ** min(failures - 1, 32)
    return min(delay, ttl_s) if ttl_s is not None else delay


@dataclass(frozen=True, slots=True)
class Burst:
    """A run of changes being collected: when the first and the last arrived (monotonic)."""

    first_s: float
    last_s: float

    def due_at(self, quiet_s: float, cap_s: float = DEBOUNCE_CAP_S) -> float:
        """Act after `quiet_s` without changes, but never later than `cap_s` after the first."""
        return min(self.last_s + quiet_s, self.first_s + max(cap_s, quiet_s))

    def add(self, now: float) -> Burst:
        return Burst(self.first_s, max(self.last_s, now))


def start_burst(now: float) -> Burst:
    return Burst(now, now)


def hold_back(
    failed_key: str | None,
    key: str | None,
    ttl_s: float | None,
    retry_at: float | None,
    now: float,
) -> str | None:
    """Why a stale stage that failed last time should not run yet, or None to run it.

    Only a stage whose inputs and code are what they were when it failed is held: with no
    ttl until something changes (the same run would fail the same way); with a ttl until its
    backoff ends (live data may come back). Called only for stages that failed last time.
    """
    if key != failed_key:
        return None
    if ttl_s is None:
        return "failed last time; waiting for a change to its inputs or code"
    if retry_at is not None and now < retry_at:
        return f"failed last time; retrying in {format_duration(retry_at - now)}"
    return None
