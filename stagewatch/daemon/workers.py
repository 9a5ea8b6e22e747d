"""Worker threads for the daemon: blocking work runs on them, its result comes back to the loop.

Every callback that reaches the loop from here sits behind an error boundary: a bug in it is
logged and handed to `on_error` (the shell answers with a full rescan), never left to end the
loop or leave a stage marked running. The threads are daemon threads: once the daemon has
stopped, a check still reading a large file or a reload still parsing never holds the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
RUN_THREADS = 32

_Work = tuple[Future[Any], Callable[[], Any]]


class Pool:
    """Up to `size` daemon threads taking work in the order given."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, work: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            self._queue.put((future, work))
            if self._idle > 0:
                self._idle -= 1  # a waiting thread takes it
            elif len(self._threads) < self.size:
                name = f"{self.name}-{len(self._threads)}"
                thread = threading.Thread(target=self._serve, name=name, daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, work = item
            if future.set_running_or_notify_cancel():
                try:
                    result = work()
                except BaseException as exc:  # handed to whoever waits for it
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Take no more work and drop what waits; what is under way is not waited for."""
        with self._lock:
            self._closed = True
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
            for _ in self._threads:
                self._queue.put(None)


class Workers:
    """One I/O thread (watch updates, walks, checks, reloads, in the order asked) and a pool
    for stage runs, both reporting back to one asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_error: Callable[[], None]) -> None:
        self.loop = loop
        self.on_error = on_error
        self.io = Pool(1, "io")
        self.runs = Pool(RUN_THREADS, "stage")

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
        pool: Pool,
        work: Callable[[], T],
        then: Callable[[T], None],
        failed: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run `work` on a worker thread, then `then(result)` (or `failed(error)`) on the loop."""

        def done(future: Future[T]) -> None:
            if future.cancelled():
                return  # dropped by a stop: nobody waits for it any more
            error = future.exception()
            if error is None:
                self.to_loop(then, future.result())
            else:
                self.to_loop(failed or self._failed, error)

        with contextlib.suppress(RuntimeError):  # shut down while stopping: the work is not wanted
            pool.submit(work).add_done_callback(done)

    def to_loop(self, callback: Callable[[T], None], value: T) -> None:
        """From a worker thread: `callback(value)` on the loop, behind the error boundary."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing more to do
            self.loop.call_soon_threadsafe(self.guarded(callback), value)

    def on_io(self, work: Callable[[], object]) -> None:
        """Run `work` on the I/O thread for its effect alone."""
        self.offload(self.io, work, lambda _: None)

    def _failed(self, error: BaseException) -> None:
        log.error("daemon.internal_error", during="io", error=repr(error))

    def shutdown(self) -> None:
        """Take no more work; what is under way is not waited for."""
        self.io.shutdown()
        self.runs.shutdown()
