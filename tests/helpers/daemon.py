"""A real `stagewatch watch` in a subprocess, and waiting on what it logs (JSON lines)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.helpers.project import Project
from tests.helpers.waiting import wait_until

Event = dict[str, Any]
DEADLINE_S = 20.0

SYNC_STAGE = """
[[stage]]
name = "sync"
command = ["sh", "-c", "mkdir -p out && cp sync/token out/sync.txt"]
inputs = ["sync/token"]
outputs = ["out/sync.txt"]
"""
"""The barrier's stage: reads only sync/token (see RunningDaemon.barrier)."""


class RunningDaemon:
    """The daemon's events as they come; wait_for() blocks on a predicate with a deadline."""

    def __init__(
        self, project: Project, *args: str, env: dict[str, str] | None = None, argv: list[str] | None = None
    ) -> None:
        self.project = project
        self.events: list[Event] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        full_env = {**os.environ, **(env or {})}
        full_env.pop("STAGEWATCH_CONFIG", None)
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "stagewatch", "--config", str(project.root / "stagewatch.toml"),
                     "--log-format", "json", *args, "watch"],
            cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
            # No controlling terminal, as under systemd: SIGHUP reloads even when pytest runs in one.
            start_new_session=True,
        )  # fmt: skip
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line}
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def wait_for(
        self, predicate: Callable[[Event], bool], since: int = 0, timeout: float = DEADLINE_S
    ) -> int:
        """Index of the first event at or after `since` matching predicate; fails at the deadline."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index in range(since, len(self.events)):
                    if predicate(self.events[index]):
                        return index
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._readers[0].is_alive()):
                    shown = "\n".join(json.dumps(e) for e in self.events[since:][-30:])
                    raise AssertionError(
                        f"no such event within {timeout}s; daemon said:\n{shown}\n{''.join(self.stderr)}"
                    )
                self._cond.wait(min(left, 0.2))

    def wait_event(self, name: str, since: int = 0, timeout: float = DEADLINE_S, **fields: Any) -> int:
        return self.wait_for(
            lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items()), since, timeout
        )

    def ready(self) -> int:
        """Wait until the catch-up is over and its own writes have been seen; the index after."""
        return self.barrier(self.wait_event("watch.idle") + 1)

    def named(self, name: str, since: int = 0, until: int | None = None) -> list[Event]:
        with self._cond:
            return [e for e in self.events[since:until] if e.get("event") == name]

    def started(self, since: int = 0, until: int | None = None) -> list[str]:
        return [e["stage"] for e in self.named("stage.started", since, until)]

    def barrier(self, since: int) -> int:
        """Change what only the `sync` stage reads, twice, waiting each time for its run and
        the idle after it; returns the index after the second idle.

        Each watched folder has its own emitter thread, so events from two folders are not
        ordered; but after two whole rounds, whatever happened before the first is in.
        """
        end = since
        for _ in range(2):
            self.project.write("sync/token", f"{time.monotonic_ns()}")
            done = self.wait_event("stage.succeeded", end, stage="sync")
            end = self.wait_event("watch.idle", done) + 1
        return end

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        code = self.proc.wait(timeout=timeout)
        self._close()
        return code

    def _close(self) -> None:
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> RunningDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._close()


SLOW = (
    """
[pipeline]
debounce = "100ms"

[[stage]]
name = "slow"
module = "stages.slow"
inputs = ["in/slow.txt"]
outputs = ["out/slow.txt"]
{extra}

"""
    + SYNC_STAGE
)


def starts(project: Project) -> list[tuple[int, str]]:
    log = project.root / "starts.log"
    if not log.exists():
        return []
    return [
        (int(pid), text) for pid, _, text in (line.partition(" ") for line in log.read_text().splitlines())
    ]


def hold_slow_stage(daemon: RunningDaemon, slow: Project, since: int) -> int:
    """Make the slow stage run and hold (until `go` exists); its pid, once it is inside its run."""
    slow.write("in/slow.txt", "wait")
    daemon.wait_event("stage.started", since, stage="slow")
    wait_until(lambda: any(text == "wait" for _, text in starts(slow)))
    return starts(slow)[-1][0]
