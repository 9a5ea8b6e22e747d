"""The process's signal register: which stop or reload a signal asked for before anyone could act.

This is global state, kept in one place on purpose: a signal handler can only leave a note, and
the note is read at the next safe point by whoever acts on it (a command about to start, a
build's round, the daemon once it watches). Until then SIGTERM, SIGINT and a terminal's hangup
are only noted; a SIGHUP meant as a reload (no controlling terminal) waits for the daemon.
Nothing is raised from the handler: a signal landing while modules load would otherwise end
as a traceback (an exception inside a class's creation is rewrapped as RuntimeError) or as a
death by SIGINT (Python's own rule for a KeyboardInterrupt that passed through an exec()).

It imports only the standard library and terminal.py: the entry script loads it before its
handlers are in place, and the command line and the daemon read it, so it imports neither.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from stagewatch.terminal import has_controlling_terminal

COMMANDS = ("watch", "serve", "build", "status", "explain", "invalidate", "accept", "graph", "check")
DAEMON_COMMANDS = ("watch", "serve")

# --- the register ---
_asked: int | None = None  # the first stop signal, until the command acts on it
_reload_asked = False
_has_terminal = False  # seen once, when the handlers are put in place
_ours: set[int] = set()  # the signals whose handler is the register's


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    global _asked, _reload_asked
    if signum == signal.SIGHUP and not _has_terminal:
        _reload_asked = True  # read the pipeline file again once watching
    elif _asked is None:
        _asked = signum


def note_signals() -> None:
    """From here on, SIGTERM, SIGHUP and SIGINT are noted in the register, not acted on."""
    global _has_terminal
    _has_terminal = has_controlling_terminal()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        current = signal.getsignal(signum)
        # nohup's SIG_IGN is kept, and means it; so is any handler someone else installed.
        if current in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(signum, _on_signal)
            _ours.add(signum)


def take_stop() -> str | None:
    """The name of the signal that asked for a stop while the command could not act, if any;
    forgets it once said (the one who asks acts on it)."""
    global _asked
    asked, _asked = _asked, None
    return None if asked is None else signal.Signals(asked).name


def reload_asked() -> bool:
    """Whether a SIGHUP asked for a reload before the daemon could; forgets it once said."""
    global _reload_asked
    asked, _reload_asked = _reload_asked, False
    return asked


def restore_defaults() -> None:
    """Give the signals back to Python's defaults: for commands that act on them at once."""
    for signum in _ours:
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    _ours.clear()


# --- what a noted stop means ---


def command_of(argv: list[str]) -> str | None:
    """The command a command line asks for, if it names one."""
    return next((word for word in argv if word in COMMANDS), None)


def stop_status(argv: list[str]) -> int:
    """The exit status of a stop asked for by a signal: a daemon asked to stop has done what
    was asked; any other command has not finished."""
    return 0 if command_of(argv) in DAEMON_COMMANDS else 1


def say_stopped(signame: str) -> None:
    print(f"stagewatch: stopped by {signame} before it had started anything", file=sys.stderr)
