"""Waiting for a condition with a deadline, and whether a process still lives."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

DEADLINE_S = 20.0


def eventually(fact: Callable[[], T], timeout_s: float = DEADLINE_S, every_s: float = 0.02) -> T:
    """The first truthy value of fact(), asked every `every_s` until `timeout_s` have passed; at
    the deadline its last value, falsy, for a caller that asserts it with a message of its own."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fact()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every_s)


def wait_until(
    fact: Callable[[], T], timeout_s: float = DEADLINE_S, what: str = "the condition", every_s: float = 0.02
) -> T:
    """The first truthy value of fact(), as eventually(); fails at the deadline naming what was
    awaited and the last value seen."""
    value = eventually(fact, timeout_s, every_s)
    if not value:
        raise AssertionError(f"not within {timeout_s:g} s: {what} (last seen: {value!r})")
    return value


def pid_alive(pid: int) -> bool:
    """Whether the process runs; a zombie, which still has its pid, is dead for our purpose."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
