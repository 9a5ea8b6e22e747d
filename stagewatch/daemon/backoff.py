"""A failing stage's wait: how long after each failure in a row, and whether a stale stage that
failed last time is held back. Pure arithmetic on monotonic times."""

from __future__ import annotations

from dataclasses import dataclass

from stagewatch.durations import format_duration

BACKOFF_FIRST_S = 30.0


def backoff_s(failures: int, ttl_s: float | None) -> float:
    """Wait after the n-th failure in a row: 30 s, 1 min, 2 min, ... capped at ttl (if any)."""
    if failures <= 0:
        return 0.0
    delay = BACKOFF_FIRST_S * 2.0 ** min(failures - 1, 32)
    return min(delay, ttl_s) if ttl_s is not None else delay


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


@dataclass(slots=True)
class FailureRecord:
    """A stage's failures in a row: how many, the key it failed with, when to try again."""

    count: int = 0
    failed_key: str | None = None  # None: the check itself failed, or no key was recorded
    retry_at: float | None = None  # monotonic

    def failed(self, key: str | None, ttl_s: float | None, now_mono: float) -> float:
        """One more failure; returns the wait before the next try."""
        self.count += 1
        self.failed_key = key
        wait_s = backoff_s(self.count, ttl_s)
        self.retry_at = now_mono + wait_s
        return wait_s

    def forget(self) -> None:
        """Fresh again, or its settings changed: its old failures say nothing any more."""
        self.count, self.failed_key, self.retry_at = 0, None, None

    def held(self, key: str | None, ttl_s: float | None, now_mono: float) -> str | None:
        """Why a stale stage that has failed is not run yet, or None to run it."""
        return hold_back(self.failed_key, key, ttl_s, self.retry_at, now_mono)

    def retry_due(self, now_mono: float) -> bool:
        return self.retry_at is not None and self.retry_at <= now_mono
