"""Each tab's messages on their way to it: sent in order by one task per tab, at most
OUTBOX_CAP waiting. A tab that does not keep up (paused in a debugger, a hung client) is cut
off, never waited for: neither a round, nor the daemon's loop, nor its stop waits on a client.

A cut-off tab loses nothing it needs: its script reconnects once it runs again, and its hello
brings it up to date (the failures, and a reload if what it shows changed meanwhile).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

# Messages waiting for a tab, at most. A tab that reads gets each within milliseconds; one
# that has this many waiting is not reading (its socket's buffers are full besides).
OUTBOX_CAP = 16


class Outbox:
    """One tab's messages: `send` puts one on its socket (it may wait while the socket's
    buffers are full), `cut` ends the connection at once, whatever is in flight."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        cut: Callable[[str], None],
        cap: int = OUTBOX_CAP,
    ) -> None:
        self._send = send
        self._cut = cut
        self._cap = cap
        self._waiting: deque[str] = deque()
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self._cut_off = False

    @property
    def idle(self) -> bool:
        """Nothing waiting and nothing half-sent: a close frame would reach the tab now."""
        return not self._waiting and self._task is None

    def post(self, text: str) -> None:
        """Queue a message; a tab that already has OUTBOX_CAP waiting is cut off instead."""
        if self.closed:
            return
        if len(self._waiting) >= self._cap:
            self.cut(f"{len(self._waiting)} messages waiting: it does not read")
            return
        self._waiting.append(text)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while self._waiting and not self.closed:
                await self._send(self._waiting.popleft())
        except (ConnectionError, RuntimeError):  # the tab closed meanwhile
            self.close()
        except Exception as exc:  # ours: said, and the tab goes (it comes back by itself)
            log.error("serve.internal_error", error=repr(exc))
            self.cut("its messages could not be sent")
        finally:
            self._task = None

    def cut(self, why: str) -> None:
        """End the connection now, dropping what waits and what is in flight."""
        self.close()
        if not self._cut_off:
            self._cut_off = True
            self._cut(why)

    def close(self) -> None:
        """Send nothing more (the socket is closing, or closed)."""
        self.closed = True
        self._waiting.clear()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
