"""Run one stage in its own process group: environment, timeout and kill, output capture -> RunResult."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO

from stagewatch.codedeps import resolve_module_source
from stagewatch.durations import format_duration
from stagewatch.inputs import missing_outputs
from stagewatch.layout import CacheLayout
from stagewatch.paths import posix
from stagewatch.stage import LineSink, RunResult, Stage

BOOTSTRAP = (Path(__file__).with_name("_bootstrap.py")).read_text(encoding="utf-8")
GRACE_S = 5.0
TAIL_LINES = 20
LINE_LIMIT = 64 * 1024


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


# A stage must not outlive a stagewatch killed with SIGKILL (a restarted daemon would race the
# orphan for the same outputs). Linux's parent-death signal does it: module stages ask for it
# in the bootstrap; commands are started through setpriv, which asks and then execs them.
# (Linux sends it when the *thread* that started the process ends: runs are started from a
# thread that waits for them, so that thread outlives them.)
@functools.cache
def _setpriv() -> str | None:
    """setpriv, if it can set a parent-death signal; probed once, when a stage first starts."""
    found = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if found is None:
        return None
    try:  # --pdeathsig came with util-linux 2.33; an older one must not fail every command
        probe = subprocess.run([found, "--pdeathsig", "KILL", "--", "true"], capture_output=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return found if probe.returncode == 0 else None


def stage_argv(stage: Stage) -> list[str]:
    if stage.command is not None:
        setpriv = _setpriv()
        if setpriv is not None:
            return [setpriv, "--pdeathsig", "KILL", "--", *stage.command]
        return list(stage.command)
    assert stage.module is not None
    return [sys.executable, "-c", BOOTSTRAP, stage.module, stage.function]


def stage_env(stage: Stage, output_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(name, None)  # systemd's messages are stagewatch's to send, not its stages'
    env["STAGEWATCH_STAGE"] = stage.name
    env["STAGEWATCH_OUTPUT_DIR"] = str(output_dir)
    env["STAGEWATCH_PARENT_PID"] = str(os.getpid())
    if stage.module is not None:
        search = stage.search_path(posix(output_dir))
        if env.get("PYTHONPATH"):
            search.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(search)
        env["PYTHONUNBUFFERED"] = "1"  # lines reach the log as they are printed
    return env


def _signal_group(pgid: int, sig: signal.Signals | int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class StageRunner:
    """Starts stage processes, each in a new session; can stop all of them at once."""

    def __init__(self, output_dir: Path, on_line: LineSink | None = None, grace_s: float = GRACE_S) -> None:
        self.output_dir = output_dir
        self.on_line = on_line
        self.grace_s = grace_s
        self._running: dict[int, subprocess.Popen[bytes]] = {}
        self._by_stage: dict[str, int] = {}
        self._cancelled: set[int] = set()
        self._closing = False
        self._lock = threading.Lock()

    def log_path(self, stage: Stage) -> Path:
        return CacheLayout(self.output_dir).log(stage.name)

    def run(self, stage: Stage) -> RunResult:
        started = time.monotonic()
        env = stage_env(stage, self.output_dir)
        try:
            log_path = self.log_path(stage)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = open(log_path, "w", encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:
            message = f"could not write its log {exc.filename}: {exc.strerror or exc}"
            return RunResult.not_started(message, time.monotonic() - started)
        with log_file:
            problem = self._unstartable(stage, env)
            if problem is not None:
                log_file.write(problem + "\n")
                return RunResult.not_started(problem, time.monotonic() - started)
            with self._lock:
                # Started and registered under the lock, so cancel_all can never miss a run.
                if self._closing:
                    return RunResult(False, None, 0.0, "stopped by stagewatch", cancelled=True)
                try:
                    process = subprocess.Popen(
                        stage_argv(stage),
                        cwd=self.output_dir,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        start_new_session=True,  # its own process group: a timeout kills all of it
                    )
                except OSError as exc:
                    message = f"could not start {stage_argv(stage)[0]!r}: {exc.strerror or exc}"
                    log_file.write(message + "\n")
                    return RunResult.not_started(message, time.monotonic() - started)
                self._running[process.pid] = process
                self._by_stage[stage.name] = process.pid
            try:
                return self._supervise(stage, process, log_file, started)
            finally:
                with self._lock:
                    self._running.pop(process.pid, None)
                    self._by_stage.pop(stage.name, None)
                    self._cancelled.discard(process.pid)

    def _unstartable(self, stage: Stage, env: dict[str, str]) -> str | None:
        """Why a stage cannot be started, said in one line before trying (not in a traceback)."""
        if stage.module is not None:
            search = stage.search_path(posix(self.output_dir))
            if resolve_module_source(stage.module, search) is None:
                return f"module {stage.module!r} not found on python_path ({', '.join(search)})"
            return None
        assert stage.command is not None
        program = stage.command[0]
        if "/" in program:
            found = os.path.join(self.output_dir, program)
            usable = os.path.isfile(found) and os.access(found, os.X_OK)
            return None if usable else f"could not start {program!r}: no executable file there"
        if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
            return f"could not start {program!r}: not found on PATH"
        return None

    def _supervise(
        self, stage: Stage, process: subprocess.Popen[bytes], log_file: IO[str], started: float
    ) -> RunResult:
        write_lock = threading.Lock()
        detached = threading.Event()
        errors: deque[str] = deque(maxlen=TAIL_LINES)
        everything: deque[str] = deque(maxlen=TAIL_LINES)
        sink = self.on_line

        def pump(pipe: IO[bytes], stream: str) -> None:
            nonlocal sink
            # Bounded reads: a stage printing 300 MB without a newline must not hold it in memory.
            for raw in iter(lambda: pipe.readline(LINE_LIMIT), b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                with write_lock:
                    if detached.is_set():
                        break  # the run is over; what a stray process still writes is not ours
                    log_file.write(line + "\n")
                    everything.append(line)
                    if stream == "stderr":
                        errors.append(line)
                if sink is not None:
                    try:
                        sink(stage.name, stream, line)
                    except Exception:
                        sink = None  # keep draining the pipe: a full pipe would hang the stage
            with contextlib.suppress(OSError):
                pipe.close()

        assert process.stdout is not None and process.stderr is not None
        pumps = [
            threading.Thread(target=pump, args=(process.stdout, "stdout"), daemon=True),
            threading.Thread(target=pump, args=(process.stderr, "stderr"), daemon=True),
        ]
        for thread in pumps:
            thread.start()
        timed_out = False
        try:
            process.wait(timeout=stage.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._stop_group(process)
        # Whatever the stage left running in its group is the stage's: it must not outlive it.
        if _signal_group(process.pid, signal.SIGTERM):
            deadline = time.monotonic() + self.grace_s
            while _signal_group(process.pid, 0) and time.monotonic() < deadline:
                time.sleep(0.02)
            _signal_group(process.pid, signal.SIGKILL)
        for thread in pumps:
            # A process that left the group (setsid) may still hold the pipes: not waited for.
            thread.join(1.0)
        with write_lock:
            detached.set()
        duration_s = time.monotonic() - started
        code = process.returncode
        tail = tuple(errors) or tuple(everything)
        with self._lock:
            cancelled = process.pid in self._cancelled
        if cancelled:
            return RunResult(False, code, duration_s, "stopped by stagewatch", tail, cancelled=True)
        if timed_out:
            assert stage.timeout_s is not None
            error = f"timed out after {format_duration(stage.timeout_s)}"
            return RunResult(False, code, duration_s, error, tail, timed_out=True)
        if code != 0:
            return RunResult(False, code, duration_s, describe_exit(code), tail)
        missing = missing_outputs(stage.outputs, posix(self.output_dir))
        if missing:
            error = "exit 0 but declared output missing: " + ", ".join(missing)
            return RunResult(False, code, duration_s, error, tail)
        return RunResult(True, code, duration_s, None, tail)

    def _stop_group(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the group, a grace period, then SIGKILL."""
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()

    def cancel(self, name: str) -> bool:
        """Stop one stage's run (its result says cancelled); returns once it is gone."""
        with self._lock:
            pid = self._by_stage.get(name)
            process = self._running.get(pid) if pid is not None else None
            if process is None:
                return False
            self._cancelled.add(process.pid)
        self._stop_group(process)
        return True

    def cancel_all(self) -> None:
        """Stop every running stage and start no more; returns once they are gone."""
        with self._lock:
            self._closing = True
            running = list(self._running.values())
            self._cancelled.update(process.pid for process in running)
        threads = [threading.Thread(target=self._stop_group, args=(p,)) for p in running]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    @property
    def running_count(self) -> int:
        with self._lock:
            return len(self._running)
