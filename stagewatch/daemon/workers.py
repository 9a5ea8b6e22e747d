"""Worker threads for the daemon: blocking work runs on them, its result comes back to the loop.

Every callback that reaches the loop from here sits behind an error boundary: a bug in it is
logged and handed to `on_error` (the shell answers with a full rescan), never left to end the
loop or leave a stage marked running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
RUN_THREADS = 32


class Workers:
    """One I/O thread (watch updates, walks, checks, reloads, in the order asked) and a pool
    for stage runs, both reporting back to one asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_error: Callable[[], None]) -> None:
        self.loop = loop
        self.on_error = on_error
        self.io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="io")
        self.runs = ThreadPoolExecutor(max_workers=RUN_THREADS, thread_name_prefix="stage")

    def guarded(self, callback: Callable[..., None]) -> Callable[..., None]:
        """The callback behind an error boundary."""

        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception:
                log.exception("daemon.internal_error", callback=getattr(callback, "__name__", "?"))
                self.on_error()

        return guarded

    def offload(
        self,
        executor: ThreadPoolExecutor,
        work: Callable[[], T],
        then: Callable[[T], None],
        failed: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run `work` on a worker thread, then `then(result)` (or `failed(error)`) on the loop."""

        def done(future: Future[T]) -> None:
            error = future.exception()
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing more to do
                if error is None:
                    self.loop.call_soon_threadsafe(self.guarded(then), future.result())
                else:
                    self.loop.call_soon_threadsafe(self.guarded(failed or self._failed), error)

        with contextlib.suppress(RuntimeError):  # shut down while stopping: the work is not wanted
            executor.submit(work).add_done_callback(done)

    def on_io(self, work: Callable[[], object]) -> None:
        """Run `work` on the I/O thread for its effect alone."""
        self.offload(self.io, work, lambda _: None)

    def _failed(self, error: BaseException) -> None:
        log.error("daemon.internal_error", during="io", error=repr(error))

    def shutdown(self) -> None:
        """Take no more work; what is under way is not waited for."""
        self.io.shutdown(wait=False, cancel_futures=True)
        self.runs.shutdown(wait=False, cancel_futures=True)
