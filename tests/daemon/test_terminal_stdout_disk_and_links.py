"""The host around the daemon and the build: a deleted _build/, a closed terminal, a stdout that
goes away, symlinked folders swapped under the inputs; each with the real processes."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stagewatch.lock import lock_owner
from tests.helpers.daemon import SYNC_STAGE, RunningDaemon
from tests.helpers.project import Project
from tests.helpers.waiting import pid_alive, wait_until

pytestmark = pytest.mark.timeout(90)

DEADLINE_S = 20.0

TICKER = (
    """
[pipeline]
debounce = "50ms"

[[stage]]
name = "tick"
module = "stages.tick"
inputs = ["in/tick.txt"]
outputs = ["out/tick.txt"]
"""
    + SYNC_STAGE
)


@pytest.fixture
def ticker(project: Project) -> Project:
    """A stage that records its pid, then, until the file `go` exists, prints a line every 50 ms
    (with "quiet" in its input, it prints nothing while it waits)."""
    project.write("stages/__init__.py", "")
    project.write(
        "stages/tick.py",
        """
        import os, time

        def run(out):
            text = (out / "in/tick.txt").read_text()
            (out / "pids.log").open("a").write(f"{os.getpid()}\\n")
            while not (out / "go").exists():
                if "quiet" not in text:
                    print("tick", flush=True)
                time.sleep(0.05)
            (out / "out").mkdir(exist_ok=True)
            (out / "out/tick.txt").write_text(text)
        """,
    )
    project.write("in/tick.txt", "loud")
    project.write("sync/token", "0")
    project.config(TICKER)
    return project


def stage_pids(project: Project) -> list[int]:
    log = project.root / "pids.log"
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def stagewatch(project: Project, *args: str) -> list[str]:
    return [sys.executable, "-m", "stagewatch", "--config", str(project.root / "stagewatch.toml"), *args]


def environ() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STAGEWATCH_CONFIG", None)
    return env


def read_json_lines_until(pipe: int, done: Callable[[dict[str, object]], bool]) -> list[dict[str, object]]:
    """Events read from a raw pipe until one satisfies `done` (fails at the deadline)."""
    events: list[dict[str, object]] = []
    pending = b""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"not seen in time; got {events[-10:]}"
        if not select.select([pipe], [], [], min(left, 0.2))[0]:
            continue
        chunk = os.read(pipe, 65536)
        assert chunk, f"the output ended first; got {events[-10:]}"
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            event = json.loads(line.strip(b"\r"))
            events.append(event)
            if done(event):
                return events


# --- one writer, even after `rm -rf _build` ---


def clean(project: Project) -> None:
    """`rm -rf _build`, again if it meets a file the daemon wrote meanwhile (as a person would)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            shutil.rmtree(project.root / "_build")
            return
        except FileNotFoundError:
            return
        except OSError:
            assert time.monotonic() < deadline, "_build/ could not be removed"


def test_a_deleted_build_folder_does_not_let_a_second_writer_in(ticker: Project) -> None:
    ticker.write("go", "")
    with RunningDaemon(ticker) as daemon:
        daemon.ready()
        clean(ticker)
        build = ticker.cli("build")
        assert build.returncode == 1
        assert "is already running on this pipeline" in build.stderr
        # Named by pid even while its record is gone (the kernel's table of locks says who).
        assert f"(pid {daemon.proc.pid})" in build.stderr
        status = json.loads(ticker.cli("status", "--json").stdout)
        assert status["locked_by"] is not None and status["locked_by"]["pid"] == daemon.proc.pid
        with RunningDaemon(ticker) as second:
            assert second.proc.wait(timeout=30) == 1
            second.stop()
        assert f"(pid {daemon.proc.pid})" in "".join(second.stderr)
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0
    assert lock_owner(ticker.root) is None
    assert ticker.cli("build").returncode == 0


def test_the_daemon_writes_its_record_again_after_a_clean(ticker: Project) -> None:
    ticker.write("go", "")
    record = ticker.root / "_build/.cache/.lock"
    with RunningDaemon(ticker) as daemon:
        mark = daemon.ready()
        clean(ticker)
        daemon.barrier(mark)  # the folder's removal has been seen and acted on
        wait_until(record.exists)
        assert record.read_text().split() == [str(daemon.proc.pid), "watch"]
        proc = ticker.cli("build")
        assert f"stagewatch watch (pid {daemon.proc.pid}) is already running" in proc.stderr
        assert "stagewatch invalidate STAGE" in proc.stderr
        assert (
            ticker.cli("status").stdout.splitlines()[0] == f"stagewatch watch running (pid {daemon.proc.pid})"
        )
        daemon.stop()


# --- a closed terminal ---

# Makes its stdin (a pty's slave side) the controlling terminal of the new session, then becomes
# stagewatch: the pid stays, so the test signals and waits on stagewatch itself.
AS_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0);"
    " os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class PtyDaemon:
    """`stagewatch watch` writing to a pty this test holds the other side of; the pty is its
    controlling terminal unless `controlling` is False (then only its stdout and stderr)."""

    def __init__(self, project: Project, controlling: bool = True) -> None:
        self.master, slave = os.openpty()
        argv = stagewatch(project, "--log-format", "json", "watch")
        if controlling:
            argv[1:1] = ["-c", AS_TERMINAL]
        self.proc = subprocess.Popen(
            argv, stdin=slave if controlling else subprocess.DEVNULL, stdout=slave, stderr=slave,
            cwd=project.root, env=environ(), start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.text = b""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # Read all along (a full pty would block the daemon); with select, so that the master
        # can be closed for real: a read in progress would keep the terminal open.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.text += chunk

    def wait_for(self, needle: str) -> None:
        def seen() -> bool:
            with self._lock:
                return needle.encode() in self.text

        wait_until(seen)

    def hang_up(self) -> None:
        self._stop.set()
        self._reader.join(5)
        os.close(self.master)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self._stop.is_set():
            self.hang_up()


def test_a_hangup_of_its_terminal_stops_the_daemon_cleanly(ticker: Project) -> None:
    ticker.write("in/tick.txt", "quiet")
    daemon = PtyDaemon(ticker)
    try:
        daemon.wait_for('"stage.started"')
        wait_until(lambda: bool(stage_pids(ticker)))
        stage_pid = stage_pids(ticker)[-1]
        began = time.monotonic()
        daemon.hang_up()
        assert daemon.proc.wait(timeout=DEADLINE_S) == 0
        assert time.monotonic() - began < 10
    finally:
        daemon.close()
    wait_until(lambda: not pid_alive(stage_pid))
    assert lock_owner(ticker.root) is None
    ticker.write("go", "")
    assert ticker.cli("build").returncode == 0


def test_a_dead_pty_that_is_not_its_terminal_stops_the_daemon_with_status_1(ticker: Project) -> None:
    daemon = PtyDaemon(ticker, controlling=False)
    try:
        daemon.wait_for('"stage.output"')  # the stage prints: the next line meets the dead pty
        stage_pid = stage_pids(ticker)[-1]
        daemon.hang_up()
        assert daemon.proc.wait(timeout=DEADLINE_S) == 1
    finally:
        daemon.close()
    wait_until(lambda: not pid_alive(stage_pid))
    assert lock_owner(ticker.root) is None


def test_without_a_terminal_sighup_reloads_and_the_daemon_keeps_running(ticker: Project) -> None:
    ticker.write("go", "")
    with RunningDaemon(ticker) as daemon:  # a new session: no controlling terminal
        mark = daemon.ready()
        ticker.config(TICKER.replace('debounce = "50ms"', 'debounce = "60ms"'))
        daemon.proc.send_signal(signal.SIGHUP)
        reloaded = daemon.wait_for(
            lambda e: e.get("event") in ("config.reloaded", "config.unchanged") and e.get("why") == "SIGHUP",
            mark,
        )
        assert daemon.events[reloaded]["event"] == "config.reloaded"
        # Still watching: an edit after the reload still runs its stage.
        daemon.barrier(reloaded + 1)
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0


# --- a stdout that goes away ---


def start(project: Project, command: str, stdout: int) -> subprocess.Popen[bytes]:
    """`stagewatch COMMAND` in a session of its own, its JSON log to `stdout`."""
    return subprocess.Popen(
        stagewatch(project, "--log-format", "json", command),
        stdout=stdout, stderr=subprocess.PIPE, cwd=project.root, env=environ(), start_new_session=True,
    )  # fmt: skip


def reap(proc: subprocess.Popen[bytes]) -> None:
    """After a test, however it ended: the process gone, its stderr pipe closed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def start_watch(project: Project, stdout: int) -> subprocess.Popen[bytes]:
    return start(project, "watch", stdout)


def test_watch_stops_when_its_stdout_pipe_is_closed(ticker: Project) -> None:
    read_end, write_end = os.pipe()
    proc = start_watch(ticker, write_end)
    os.close(write_end)
    try:
        read_json_lines_until(read_end, lambda e: e.get("event") == "watch.started")
        os.close(read_end)  # as `stagewatch watch | head -1` does once it has its line
        began = time.monotonic()
        assert proc.wait(timeout=DEADLINE_S) == 1
        assert time.monotonic() - began < 10
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
    finally:
        reap(proc)
    assert stderr == "stagewatch: its output (stdout) is gone (Broken pipe); stopping\n"
    assert lock_owner(ticker.root) is None
    wait_until(lambda: not any(pid_alive(pid) for pid in stage_pids(ticker)))


def test_watch_stops_when_its_stdout_closes_during_a_run(ticker: Project) -> None:
    read_end, write_end = os.pipe()
    proc = start_watch(ticker, write_end)
    os.close(write_end)
    try:
        # The stage's own lines reach the log from the runner's threads: the first one failing stops it.
        read_json_lines_until(read_end, lambda e: e.get("event") == "stage.output")
        stage_pid = stage_pids(ticker)[-1]
        os.close(read_end)
        assert proc.wait(timeout=DEADLINE_S) == 1
    finally:
        reap(proc)
    wait_until(lambda: not pid_alive(stage_pid))
    assert lock_owner(ticker.root) is None
    state = json.loads((ticker.root / "_build/.cache/state.json").read_text())
    assert state["stages"]["tick"]["result"] == "cancelled"


def test_sigterm_stops_a_watch_whose_stdout_is_gone(ticker: Project) -> None:
    ticker.write("in/tick.txt", "quiet")  # nothing written while the stage waits: no write fails
    read_end, write_end = os.pipe()
    proc = start_watch(ticker, write_end)
    os.close(write_end)
    try:
        read_json_lines_until(read_end, lambda e: e.get("event") == "stage.started")
        wait_until(lambda: bool(stage_pids(ticker)))
        stage_pid = stage_pids(ticker)[-1]
        os.close(read_end)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE_S) in (0, 1)
    finally:
        reap(proc)
    wait_until(lambda: not pid_alive(stage_pid))
    assert lock_owner(ticker.root) is None


def test_watch_into_a_full_disk_exits_1_promptly(ticker: Project) -> None:
    ticker.write("go", "")
    with open("/dev/full", "wb") as full:
        began = time.monotonic()
        proc = subprocess.run(
            stagewatch(ticker, "--log-format", "json", "watch"),
            stdout=full, stderr=subprocess.PIPE, cwd=ticker.root, env=environ(), timeout=DEADLINE_S,
        )  # fmt: skip
    assert proc.returncode == 1
    assert time.monotonic() - began < 10
    assert b"its output (stdout) is gone (No space left on device); stopping" in proc.stderr
    assert b"Traceback" not in proc.stderr
    assert lock_owner(ticker.root) is None


def start_build(project: Project, stdout: int) -> subprocess.Popen[bytes]:
    return start(project, "build", stdout)


def test_build_stops_its_stage_when_stdout_closes_mid_run(ticker: Project) -> None:
    read_end, write_end = os.pipe()
    proc = start_build(ticker, write_end)
    os.close(write_end)
    try:
        read_json_lines_until(read_end, lambda e: e.get("event") == "stage.output")
        stage_pid = stage_pids(ticker)[-1]
        os.close(read_end)
        assert proc.wait(timeout=DEADLINE_S) == 1
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
    finally:
        reap(proc)
    assert stderr == "stagewatch: its output (stdout) is gone (Broken pipe); stopping\n"
    wait_until(lambda: not pid_alive(stage_pid))
    assert lock_owner(ticker.root) is None
    assert not (ticker.root / "out/tick.txt").exists()


def test_sigterm_stops_a_build_whose_stdout_is_gone(ticker: Project) -> None:
    ticker.write("in/tick.txt", "quiet")
    read_end, write_end = os.pipe()
    proc = start_build(ticker, write_end)
    os.close(write_end)
    try:
        read_json_lines_until(read_end, lambda e: e.get("event") == "stage.started")
        wait_until(lambda: bool(stage_pids(ticker)))
        stage_pid = stage_pids(ticker)[-1]
        os.close(read_end)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE_S) == 1
    finally:
        reap(proc)
    wait_until(lambda: not pid_alive(stage_pid))
    assert lock_owner(ticker.root) is None


def test_build_into_a_full_disk_exits_1_without_running(ticker: Project) -> None:
    ticker.write("go", "")
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            stagewatch(ticker, "--log-format", "json", "build"),
            stdout=full, stderr=subprocess.PIPE, cwd=ticker.root, env=environ(), timeout=DEADLINE_S,
        )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr == b"stagewatch: its output (stdout) is gone (No space left on device); stopping\n"
    assert stage_pids(ticker) == []  # its first line failed: no stage was started
    assert lock_owner(ticker.root) is None


# --- symlinked folders inside inputs ---

LINKED = (
    """
[pipeline]
debounce = "50ms"

[[stage]]
name = "pages"
command = ["sh", "-c", "mkdir -p out && cat content/current/page.md > out/page.txt"]
inputs = ["content/"]
outputs = ["out/page.txt"]
"""
    + SYNC_STAGE
)


@pytest.fixture
def linked(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """content/current -> a release folder outside the project (inotify does not follow it)."""
    releases = tmp_path_factory.mktemp("releases")
    for version in ("v1", "v2"):
        (releases / version).mkdir()
        (releases / version / "page.md").write_text(f"{version} first")
    (project.root / "content").mkdir()
    (project.root / "content" / "current").symlink_to(releases / "v1")
    project.write("sync/token", "0")
    project.config(LINKED)
    return project


def releases_of(project: Project) -> Path:
    return Path(os.readlink(project.root / "content" / "current")).parent


def swap_link(project: Project, version: str) -> None:
    """`ln -sfn releases/v2 current`, atomically: a new link renamed over the old one."""
    tmp = project.root / "content" / "current.new"
    tmp.symlink_to(releases_of(project) / version)
    os.replace(tmp, project.root / "content" / "current")


def test_an_edit_behind_a_symlinked_folder_reruns_the_stage(linked: Project) -> None:
    with RunningDaemon(linked) as daemon:
        mark = daemon.ready()
        (releases_of(linked) / "v1" / "page.md").write_text("v1 edited")
        daemon.wait_event("stage.succeeded", mark, stage="pages")
        assert linked.read("out/page.txt") == "v1 edited"
        daemon.stop()


def test_a_swapped_symlink_is_followed_to_its_new_folder(linked: Project) -> None:
    releases = releases_of(linked)
    with RunningDaemon(linked) as daemon:
        mark = daemon.ready()
        swap_link(linked, "v2")
        done = daemon.wait_event("stage.succeeded", mark, stage="pages")
        assert linked.read("out/page.txt") == "v2 first"
        quiet = daemon.barrier(done + 1)
        # The new target is watched: an edit there reruns the stage.
        (releases / "v2" / "page.md").write_text("v2 edited")
        again = daemon.wait_event("stage.succeeded", quiet, stage="pages")
        assert linked.read("out/page.txt") == "v2 edited"
        quiet = daemon.barrier(again + 1)
        # The old one is not: an edit there is nothing to this pipeline.
        (releases / "v1" / "page.md").write_text("v1 edited")
        end = daemon.barrier(quiet)
        assert daemon.started(quiet, end) == ["sync", "sync"]
        assert not [e for e in daemon.named("watch.changed", quiet, end) if "pages" in e["stages"]]
        assert linked.read("out/page.txt") == "v2 edited"
        daemon.stop()
