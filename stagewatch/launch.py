"""The first steps of a stagewatch process: a signal that comes before it is ready is not fatal.

Until a command installs handlers of its own (the daemon's loop, a build's round), SIGTERM or a
terminal's hangup stops the process with one line instead of killing it in the middle of its
imports, and a SIGHUP meant as a reload (no controlling terminal) is remembered and carried out
once the daemon watches. This module imports nothing of stagewatch until it has done that.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


class StoppedEarly(BaseException):
    """A stop asked for before the command had handlers of its own (a BaseException, as
    KeyboardInterrupt is: nothing may swallow it). Ctrl-C raises it too, never
    KeyboardInterrupt: Python makes a process whose KeyboardInterrupt passed through an exec()
    (dataclasses make their methods so, while modules load) die by SIGINT even once caught."""

    @property
    def signame(self) -> str:
        return signal.Signals(self.args[0]).name


_reload_asked = False


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    global _reload_asked
    if signum == signal.SIGHUP:
        from stagewatch.terminal import has_controlling_terminal

        if not has_controlling_terminal():
            _reload_asked = True  # read the pipeline file again once watching
            return
    raise StoppedEarly(signum)


def reload_asked() -> bool:
    """Whether a SIGHUP asked for a reload before the daemon could; forgets it once said."""
    global _reload_asked
    asked, _reload_asked = _reload_asked, False
    return asked


_COMMANDS = ("watch", "serve", "build", "status", "explain", "invalidate", "accept", "graph", "check")


def _command(argv: list[str]) -> str | None:
    return next((word for word in argv if word in _COMMANDS), None)


def stop_status(argv: list[str]) -> int:
    """The exit status of a stop asked for by a signal: a daemon asked to stop has done what
    was asked; any other command has not finished."""
    return 0 if _command(argv) == "watch" else 1


def run() -> None:
    """Console-script entry point."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:  # nohup's SIG_IGN is kept, and means it
            signal.signal(signum, _on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_signal)
    try:
        from stagewatch.cli import main

        code = main()
    except StoppedEarly as stopped:
        print(f"stagewatch: stopped by {stopped.signame} before it had started anything", file=sys.stderr)
        code = stop_status(sys.argv[1:])
    sys.exit(code)
