"""When a burst of changes is acted on, as pure arithmetic on monotonic times: the debounce.
(A failed stage's wait is backoff.py's; a TTL stage's due time is ttl.py's, the one
rule build and the daemon share.)"""

from __future__ import annotations

from dataclasses import dataclass

DEBOUNCE_CAP_S = 2.0


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
