"""The first steps of a stagewatch process: a signal that comes before it is ready is not fatal.

Until a command can act on them (the daemon's loop, a build's round), SIGTERM, SIGINT and a
terminal's hangup are only noted, and the command stops at its next safe point with one line;
a SIGHUP meant as a reload (no controlling terminal) is carried out once the daemon watches.
Nothing is raised from the handler: a signal landing while modules load would otherwise end
as a traceback (an exception inside a class's creation is rewrapped as RuntimeError) or as a
death by SIGINT (Python's own rule for a KeyboardInterrupt that passed through an exec()).
This module imports nothing of stagewatch until its handlers are in place.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import types
from types import FrameType

_COMMANDS = ("watch", "serve", "build", "status", "explain", "invalidate", "accept", "graph", "check")
_asked: int | None = None  # the first stop signal, until the command acts on it
_reload_asked = False
_has_terminal = False
_ours: set[int] = set()


def _has_controlling_terminal() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    global _asked, _reload_asked
    if signum == signal.SIGHUP and not _has_terminal:
        _reload_asked = True  # read the pipeline file again once watching
    elif _asked is None:
        _asked = signum


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


def _command(argv: list[str]) -> str | None:
    return next((word for word in argv if word in _COMMANDS), None)


def stop_status(argv: list[str]) -> int:
    """The exit status of a stop asked for by a signal: a daemon asked to stop has done what
    was asked; any other command has not finished."""
    return 0 if _command(argv) in ("watch", "serve") else 1


class _AsyncioOnFirstUse(types.ModuleType):
    """Stands in for asyncio until something uses it, then becomes it.

    structlog imports asyncio at its top, for methods only a coroutine calls; a one-shot
    command never awaits, and asyncio (ssl with it) is the largest import it would make. An
    `import asyncio` finds this module (its __spec__ is the real one's, so the import system
    takes it as loaded); the first attribute asked of it loads asyncio and takes on its names.
    A submodule imported before anything of the package (`import asyncio.events` first) is
    loaded twice; no one-shot command imports one.
    """

    def __getattr__(self, name: str) -> object:
        if sys.modules.get("asyncio") is self:
            del sys.modules["asyncio"]
        import asyncio

        self.__dict__.update(asyncio.__dict__)
        return getattr(asyncio, name)


def _asyncio_on_first_use() -> None:
    if "asyncio" in sys.modules:
        return
    spec = importlib.util.find_spec("asyncio")
    if spec is None:
        return
    stand_in = _AsyncioOnFirstUse("asyncio")
    stand_in.__spec__ = spec
    sys.modules["asyncio"] = stand_in


def say_stopped(signame: str) -> None:
    print(f"stagewatch: stopped by {signame} before it had started anything", file=sys.stderr)


def run() -> None:
    """Console-script entry point."""
    global _has_terminal
    _has_terminal = _has_controlling_terminal()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        current = signal.getsignal(signum)
        # nohup's SIG_IGN is kept, and means it; so is any handler someone else installed.
        if current in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(signum, _on_signal)
            _ours.add(signum)
    if _command(sys.argv[1:]) not in (None, "watch", "serve"):
        _asyncio_on_first_use()  # the daemon's loop needs it at once, before any thread
    from stagewatch.cli import main

    code = main()
    asked = take_stop()
    if asked is not None:  # asked after the command's last look, and before its own handlers
        print(f"stagewatch: stopped by {asked}", file=sys.stderr)
        code = stop_status(sys.argv[1:])
    sys.exit(code)
