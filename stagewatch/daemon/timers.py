"""The daemon's named timers on its loop: one per name, and none but the watchdog's once stopping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

Guard = Callable[[Callable[[], None]], Callable[[], None]]


class Timers:
    """Arming a timer again replaces it: a debounce pushed back, a rescan rescheduled.

    From the stop on, only the timers that must outlive it are armed: systemd's watchdog keeps
    being told the loop is alive while runs are stopped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, guard: Guard, outlive_stop: tuple[str, ...]) -> None:
        self._loop = loop
        self._guard = guard  # a timer's callback runs inside the daemon's error boundary
        self._outlive_stop = outlive_stop
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self._stopping = False

    def arm(self, name: str, delay_s: float, callback: Callable[[], None]) -> None:
        old = self._handles.pop(name, None)
        if old is not None:
            old.cancel()
        if not self._stopping or name in self._outlive_stop:
            self._handles[name] = self._loop.call_later(max(0.0, delay_s), self._guard(callback))

    def stopping(self) -> None:
        """Cancel every timer but those that outlive a stop, and arm no other from now on."""
        self._stopping = True
        for name in [name for name in self._handles if name not in self._outlive_stop]:
            self._handles.pop(name).cancel()

    def close(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
