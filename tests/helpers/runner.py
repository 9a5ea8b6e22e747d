"""Running stages in real subprocesses: stage modules written on disk, and sleepers that say
their pids, to find what a run left behind."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from pathlib import Path

from tests.helpers.waiting import eventually


def write_module(root: Path, name: str, body: str) -> None:
    path = root / "stages" / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


# A process that says its pid in the file named by its first argument, then sleeps.
SLEEPER = "import os, sys, time; open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); "
SLEEPER += "os.rename(sys.argv[1] + '.tmp', sys.argv[1]); time.sleep(120)"
ESCAPING_SLEEPER = "import os; os.setsid(); " + SLEEPER


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def pids_when_written(root: Path, names: list[str], timeout_s: float = 20.0) -> dict[str, int]:
    assert eventually(lambda: all(read_pid(root / name) for name in names), timeout_s), [
        name for name in names if not read_pid(root / name)
    ]
    return {name: read_pid(root / name) or 0 for name in names}


def end_sleepers(pids: Iterable[int | None]) -> None:
    """Kill what a failed test left behind (only our sleepers: a pid may have been reused)."""
    for pid in pids:
        if pid is None:
            continue
        try:
            if b"time.sleep(120)" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
