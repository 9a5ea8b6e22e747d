"""The console entry point: signals noted before anything loads, then the command line.

A signal that comes before a command is ready is not fatal: the register (signals.py) notes
it, and the command acts on it at its next safe point with one line. One-shot commands get a
stand-in for asyncio, which they never await. Only the `stagewatch` console script and
`python -m stagewatch` (__main__.py) import this module; it loads nothing of stagewatch but
the register (and terminal.py, which it reads) before its handlers are in place.
"""

from __future__ import annotations

import importlib.util
import sys
import types

from stagewatch.signals import DAEMON_COMMANDS, command_of, note_signals, stop_status, take_stop


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


def run() -> None:
    """Console-script entry point."""
    note_signals()
    if command_of(sys.argv[1:]) not in (None, *DAEMON_COMMANDS):
        _asyncio_on_first_use()  # the daemon's loop needs it at once, before any thread
    from stagewatch.cli import main

    code = main()
    asked = take_stop()
    if asked is not None:  # asked after the command's last look, and before its own handlers
        print(f"stagewatch: stopped by {asked}", file=sys.stderr)
        code = stop_status(sys.argv[1:])
    sys.exit(code)
