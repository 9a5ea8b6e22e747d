"""Run one stage under its keeper, in its own process group: environment, timeout, output -> the
run's facts (RunFacts; outcome.judge turns them into its verdict)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from stagewatch.capture import OutputCapture, StageLog, open_log
from stagewatch.codedeps import resolve_module_source
from stagewatch.inputs import missing_outputs
from stagewatch.layout import CacheLayout
from stagewatch.outcome import RunFacts, judge
from stagewatch.output_folders import OutputFolders, make_output_folders, remove_left_empty
from stagewatch.paths import posix
from stagewatch.runnable import module_problems
from stagewatch.runrecord import (
    TOKEN_VAR,
    CorruptRecord,
    RunRecord,
    command_line,
    descendants,
    group_members,
    new_token,
    read_record,
    remove_record,
    stop_run,
    write_record,
)
from stagewatch.stage import LineSink, RunResult, Stage

BOOTSTRAP = (Path(__file__).with_name("_bootstrap.py")).read_text(encoding="utf-8")
GRACE_S = 5.0
ORPHAN_WAIT_S = 5.0
KILL_WAIT_S = 2.0  # for a SIGKILLed tree to be reaped by its keeper (a process in D state takes its time)

log = structlog.get_logger(__name__)


# No run may outlive stagewatch, however it dies (docs/design.md#runs): every stage is started through the
# keeper (_bootstrap.py), which leads the stage's process group, reaps its orphans and, on the
# parent-death signal, SIGKILLs the whole tree. A module stage's keeper is its own interpreter
# (the worker is forked before any stage code runs); a command's keeper is a bare `python -I -S`.
def stage_argv(stage: Stage, status_fd: int) -> list[str]:
    if stage.command is not None:
        return [sys.executable, "-I", "-S", "-c", BOOTSTRAP, str(status_fd), "command", *stage.command]
    assert stage.module is not None
    arguments = [part for pair in stage.call_arguments.items() for part in pair]
    code = [sys.executable, "-c", BOOTSTRAP, str(status_fd), "module", stage.module, stage.function]
    return code + arguments


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


def start_problem(stage: Stage, output_dir: Path, env: dict[str, str]) -> str | None:
    """Why a stage cannot be started, said in one line before trying (not in a traceback)."""
    if stage.module is not None:
        search = stage.search_path(posix(output_dir))
        source = resolve_module_source(stage.module, search)
        problems = module_problems(stage.module, source, search)
        return str(problems[0]) if problems else None
    assert stage.command is not None
    program = stage.command[0]
    if "/" in program:
        found = os.path.join(output_dir, program)
        usable = os.path.isfile(found) and os.access(found, os.X_OK)
        return None if usable else f"could not start {program!r}: no executable file there"
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        return f"could not start {program!r}: not found on PATH"
    return None


@dataclass
class RunTicket:
    """One run's handle: a cancel through it reaches that run and no other, even one not started."""

    cancelled: bool = False
    process: subprocess.Popen[bytes] | None = None


def _describe(pid: int) -> str:
    command = command_line(pid)
    return f"pid {pid}" if command is None else f"pid {pid} ({command})"


def _signal_group(pgid: int, sig: signal.Signals | int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Status:
    """What the keeper said when the worker ended."""

    code: int
    clean: bool  # nothing of the run was left alive


@dataclass(frozen=True, slots=True)
class _Ending:
    """How a run's tree ended."""

    clean: bool  # the keeper saw all of it end: nothing of the run can be left
    stopped: tuple[str, ...] = ()  # still running a grace period after the main process ended


def _read_status(sock: socket.socket, timeout_s: float | None) -> _Status | None:
    """The keeper's report; None when it went away without one. TimeoutError after timeout_s."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    data = b""
    while not data.endswith(b"\n"):
        if deadline is not None:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                raise TimeoutError
            sock.settimeout(left_s)
        try:
            chunk = sock.recv(64)
        except TimeoutError:
            raise
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    code, _, state = data.decode("ascii", "replace").strip().partition(" ")
    try:
        return _Status(int(code), state == "clean")
    except ValueError:
        return None


class StageRunner:
    """Starts stage processes, each in a new session under its keeper; can stop all of them at once."""

    def __init__(self, output_dir: Path, on_line: LineSink | None = None, grace_s: float = GRACE_S) -> None:
        self.output_dir = output_dir
        self.layout = CacheLayout(output_dir)
        self.on_line = on_line
        self.grace_s = grace_s
        self._running: dict[int, subprocess.Popen[bytes]] = {}
        self._cancelled: set[int] = set()
        self._closing = False
        self._lock = threading.Lock()

    def log_path(self, stage: Stage) -> Path:
        return self.layout.log(stage.name)

    def run(self, stage: Stage, ticket: RunTicket | None = None) -> RunResult:
        """Run the stage to its end and judge it alone (no fingerprint, no entry)."""
        return judge(self.observe(stage, ticket)).result

    def observe(self, stage: Stage, ticket: RunTicket | None = None) -> RunFacts:
        """Run the stage to its end and say what it did; `ticket` lets cancel_run reach this
        run, and only this one."""
        ticket = ticket if ticket is not None else RunTicket()
        started = time.monotonic()
        token = new_token()
        env = stage_env(stage, self.output_dir)
        env[TOKEN_VAR] = token  # every process of the run carries it: how a survivor is found later
        log_path = self.log_path(stage)
        try:
            run_log = StageLog(stage.name, log_path, open_log(log_path, self.output_dir))
        except OSError as exc:
            message = f"could not write its log {log_path}: {exc.strerror or exc}"
            return RunFacts.refusal(message, time.monotonic() - started)
        with run_log:
            problem = start_problem(stage, self.output_dir, env) or self._stop_earlier_run(stage)
            folders = OutputFolders()
            if problem is None:
                folders = make_output_folders(stage.outputs, posix(self.layout.output_dir))
                problem = folders.problem
            if problem is not None:
                run_log.write(problem)
                return RunFacts.refusal(problem, time.monotonic() - started)
            try:
                return self._start(stage, ticket, env, token, run_log, folders.made, started)
            finally:
                # Done before the outputs are looked at too; done again, it does nothing.
                remove_left_empty(folders.made, posix(self.layout.output_dir))

    def _start(
        self,
        stage: Stage,
        ticket: RunTicket,
        env: dict[str, str],
        token: str,
        run_log: StageLog,
        made: tuple[str, ...],
        started: float,
    ) -> RunFacts:
        """Start the keeper (unless the run is cancelled already) and supervise it to its end."""
        ours, keepers = socket.socketpair()
        with ours:
            with keepers, self._lock:
                # Started and registered under the lock, so no cancel can ever miss a run.
                if self._closing or ticket.cancelled:
                    return RunFacts(0.0, cancelled=True)
                try:
                    process = subprocess.Popen(
                        stage_argv(stage, keepers.fileno()),
                        cwd=self.output_dir,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        start_new_session=True,  # its own process group: a timeout kills all of it
                        pass_fds=(keepers.fileno(),),
                    )
                except OSError as exc:
                    message = f"could not start {sys.executable!r}: {exc.strerror or exc}"
                    run_log.write(message)
                    return RunFacts.refusal(message, time.monotonic() - started)
                self._running[process.pid] = process
                ticket.process = process
            try:
                return self._supervise(stage, process, ours, token, run_log, made, started)
            finally:
                with self._lock:
                    self._running.pop(process.pid, None)
                    self._cancelled.discard(process.pid)

    def _stop_earlier_run(self, stage: Stage) -> str | None:
        """Stop what is left of an earlier run of the stage: it must never write over this one's outputs.

        The caller holds the pipeline's lock, so a recorded run is not a live stagewatch's: its
        stagewatch died (SIGKILL, a crash) before its processes did.
        """
        path = self.layout.run_record(stage.name)
        record = read_record(path)
        if record is None:
            return None
        if isinstance(record, CorruptRecord):
            log.warning("run_record.corrupt", stage=stage.name, path=record.path, problem=record.problem)
        found, left = stop_run(record, stage.name, self.output_dir, ORPHAN_WAIT_S)
        if left:
            pids = ", ".join(map(str, left))
            return f"not started: processes of an earlier run survive SIGKILL (pids {pids})"
        if found:
            log.warning("stage.orphans_killed", stage=stage.name, pids=found)
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def _supervise(
        self,
        stage: Stage,
        process: subprocess.Popen[bytes],
        keeper: socket.socket,
        token: str,
        run_log: StageLog,
        made: tuple[str, ...],
        started: float,
    ) -> RunFacts:
        capture = OutputCapture(stage.name, run_log, self.on_line)
        assert process.stdout is not None and process.stderr is not None
        capture.start(process.stdout, process.stderr)
        # The record is on disk before the keeper's go: no stage code ever runs without one.
        record = RunRecord.new(token, process.pid)
        try:
            write_record(self.layout, stage.name, record)
        except OSError as exc:
            problem = f"could not write its run record {exc.filename}: {exc.strerror or exc}"
            keeper.close()  # the keeper reads no go and leaves
            process.wait()
            capture.finish(1.0)
            run_log.write(problem)
            return RunFacts.refusal(problem, time.monotonic() - started)
        status, timed_out, linger_s = self._go_and_wait(stage, process, keeper)
        ending = self._end_group(process, status, linger_s)
        self._end_record(stage, record, clean=ending.clean)
        tail = capture.finish(1.0)
        duration_s = time.monotonic() - started
        with self._lock:
            cancelled = process.pid in self._cancelled
        # An output folder made for the run must have been filled by it.
        remove_left_empty(made, posix(self.layout.output_dir))
        cut = bool(ending.stopped) and linger_s is not None and linger_s < self.grace_s  # by the timeout
        return RunFacts(
            duration_s,
            status.code if status is not None else process.returncode,
            tail,
            cancelled=cancelled,
            timed_out_after_s=stage.timeout_s if timed_out else None,
            leftovers=ending.stopped,
            grace_s=self.grace_s,
            leftovers_cut_s=stage.timeout_s if cut else None,
            missing_outputs=missing_outputs(stage.outputs, posix(self.output_dir)),
        )

    def _go_and_wait(
        self, stage: Stage, process: subprocess.Popen[bytes], keeper: socket.socket
    ) -> tuple[_Status | None, bool, float | None]:
        """Give the keeper its go and wait for its report within the stage's timeout: the report,
        whether the timeout came first, and how long what the main process left running may
        still linger (None: no longer, the time is up)."""
        went = time.monotonic()  # what the timeout counts from
        with self._lock, contextlib.suppress(OSError):
            if process.pid not in self._cancelled:
                keeper.sendall(b"g")
            else:  # cancelled already: no go, and the keeper, reading the end of the stream, leaves
                keeper.shutdown(socket.SHUT_WR)
        try:
            return _read_status(keeper, stage.timeout_s), False, self._linger_s(stage, went)
        except TimeoutError:
            pass
        self._stop_group(process)
        with contextlib.suppress(TimeoutError):  # the keeper is gone: what it said, or EOF, is there
            return _read_status(keeper, 1.0), True, None
        return None, True, None

    def _linger_s(self, stage: Stage, went: float) -> float:
        """What the main process leaves running gets the grace period, within the stage's timeout."""
        if stage.timeout_s is None:
            return self.grace_s
        return max(0.0, min(self.grace_s, went + stage.timeout_s - time.monotonic()))

    def _end_group(
        self, process: subprocess.Popen[bytes], status: _Status | None, linger_s: float | None
    ) -> _Ending:
        """Whatever the stage left running is the stage's: it must not outlive it.

        The keeper leaves once no descendant is left, so its exit is the run's end; a keeper
        that died first (killed from outside) leaves the group to be watched directly. With
        `linger_s`, what the stage's main process left behind gets that long to end by itself;
        those still running then had to be stopped, and the ending names them.
        """
        if status is not None and status.clean:
            process.wait()  # nothing left to wait for: the keeper is on its way out
            return _Ending(clean=True)
        stopped: tuple[str, ...] = ()
        if status is not None and linger_s is not None:
            # Its main process has ended, but something it started goes on (a helper still
            # writing an output): it may finish by itself, and the run with it.
            try:
                process.wait(timeout=linger_s)
            except subprocess.TimeoutExpired:
                stopped = tuple(_describe(pid) for pid in descendants(process.pid))
            else:
                # Ended by itself, or by a cancel meanwhile: the sweep by token costs little here.
                return _Ending(clean=False)
        _signal_group(process.pid, signal.SIGTERM)  # the keeper passes it to those who left the group
        deadline = time.monotonic() + self.grace_s
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=self.grace_s)
        # Zombies do not count: with their keeper gone, they wait for init to reap them.
        while group_members(process.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._kill_tree(process)
        return _Ending(clean=False, stopped=stopped)

    def _kill_tree(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the run's whole tree; returns once its keeper is gone.

        Its descendants first, while the keeper lives to find them below it (those who left
        the group too) and to reap them: dead means reaped, not dying. The keeper then leaves
        by itself; the group's SIGKILL is for a keeper that does not.
        """
        deadline = time.monotonic() + KILL_WAIT_S
        while process.poll() is None and time.monotonic() < deadline:
            tree = descendants(process.pid)
            if not tree:
                break
            for pid in tree:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.02)
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()

    def _end_record(self, stage: Stage, record: RunRecord, clean: bool) -> None:
        """Remove the run's record once none of its processes is alive."""
        if not clean:
            # The keeper died before its tree (killed): what left the group may have survived it.
            _found, left = stop_run(record, stage.name, self.output_dir, ORPHAN_WAIT_S)
            if left:
                log.warning("stage.outlived", stage=stage.name, pids=left)
                with contextlib.suppress(OSError):  # kept (or put back): the next run stops them first
                    if read_record(self.layout.run_record(stage.name)) != record:
                        write_record(self.layout, stage.name, record)
                return
        remove_record(self.layout, stage.name, record.token)

    def _stop_group(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the group, a grace period, then SIGKILL."""
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            self._kill_tree(process)

    def cancel_run(self, ticket: RunTicket) -> bool:
        """Stop the run this ticket was given to (or keep it from starting); returns once it is
        gone: True if it was running, False if it had not started (it never will) or was over."""
        with self._lock:
            ticket.cancelled = True
            process = ticket.process
            if process is None or process.pid not in self._running:
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
