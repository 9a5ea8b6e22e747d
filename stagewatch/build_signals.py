"""How a one-shot build is stopped: SIGTERM, a terminal's hangup and a lost stdout unwind it like Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from stagewatch.log import on_output_gone, output_gone
from stagewatch.signals import take_stop
from stagewatch.terminal import sighup_stops


class Stopped(Exception):
    """SIGTERM (or a terminal's hangup) arrived: unwind like Ctrl-C so running stages are stopped."""


class OutputGone(BaseException):
    """The log's stream went away during a build: unwind like Ctrl-C so running stages are stopped.

    A BaseException, as KeyboardInterrupt is: no `except Exception` on the way may swallow it.
    """


@contextlib.contextmanager
def stopped_by_signals_and_lost_output() -> Iterator[None]:
    """While a build round runs: SIGTERM, a terminal's hangup and a lost stdout all unwind the
    main thread like Ctrl-C, so BuildRound stops its stages' process groups on the way out."""
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def unwind(signum: int, _frame: FrameType | None) -> None:
        if output_gone() is not None:
            raise OutputGone()
        raise Stopped(signal.Signals(signum).name)

    def wake_main(_reason: str) -> None:
        # The log may fail on a stage's output thread while the main thread waits for runs: a
        # signal to the main thread interrupts that wait, and `unwind` raises there.
        signal.pthread_kill(main_thread, signal.SIGTERM)

    handled = [signal.SIGTERM]
    if sighup_stops():
        handled.append(signal.SIGHUP)
    previous = {signum: signal.signal(signum, unwind) for signum in handled}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    forget = on_output_gone(wake_main)
    try:
        asked = take_stop()  # a stop asked for while the build got ready: acted on now
        if asked is not None:
            raise KeyboardInterrupt if asked == "SIGINT" else Stopped(asked)
        yield
    finally:
        forget()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
