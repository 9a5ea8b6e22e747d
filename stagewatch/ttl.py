"""When a TTL stage is due: the one rule `build`, `status` and the daemon share. Pure arithmetic
on wall-clock times."""

from __future__ import annotations


def ttl_due_at(entry_mtime: float | None, ttl_s: float, now: float) -> float:
    """When a TTL stage is next due (wall clock): entry mtime + ttl; with no entry, now.

    An entry dated in the future means the clock stepped back: its age is unknown, so it is
    due now (docs/design.md#ttl-and-the-clock), never after the step plus a whole ttl.
    """
    if entry_mtime is None or entry_mtime > now:
        return now
    return entry_mtime + ttl_s


def ttl_expired(entry_mtime: float, ttl_s: float, now: float) -> bool:
    """Whether a TTL stage's entry has expired: it is `ttl_s` old, or dated in the future.

    An entry from the future means the clock stepped back since the run: trusting it would
    keep the stage fresh for its whole ttl plus the step, so it counts as expired
    (docs/design.md#ttl-and-the-clock).
    """
    return ttl_due_at(entry_mtime, ttl_s, now) <= now
