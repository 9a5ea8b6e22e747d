"""The real daemon under faults of the core: reloads and invalidates during runs, failed TTL
stages, a stage that triggers itself, the output folder vanishing, a loop that never blocks."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.daemon import SYNC_STAGE, RunningDaemon, hold_slow_stage, starts
from tests.helpers.project import Project
from tests.helpers.systemd import NotifySocket
from tests.helpers.waiting import pid_alive, wait_until

pytestmark = pytest.mark.timeout(90)


def holder(name: str, output: str) -> str:
    """A module stage that records its pid and holds until the file `go` exists."""
    return f"""
import os, time
def run(out):
    (out / "{name}.pid").write_text(str(os.getpid()))
    while not (out / "go").exists():
        time.sleep(0.01)
    (out / "{output}").write_text("{name}")
"""


def test_a_removed_stages_run_has_stopped_before_its_replacement_starts(project: Project) -> None:
    project.write("stages/__init__.py", "")
    project.write("stages/old.py", holder("old", "shared.txt"))
    project.write(
        "stages/new.py",
        """
import os
def run(out):
    pid = int((out / "old.pid").read_text())
    try:
        state = open(f"/proc/{pid}/stat").read().split(") ", 1)[1][:1]
    except FileNotFoundError:
        state = "gone"
    (out / "shared.txt").write_text("new; old was " + ("alive" if state not in ("gone", "Z") else "gone"))
""",
    )
    stage = '[[stage]]\nname = "{name}"\nmodule = "stages.{name}"\noutputs = ["shared.txt"]\n'
    project.config(stage.format(name="old"))
    with RunningDaemon(project) as daemon:
        daemon.wait_event("stage.started", stage="old")
        wait_until(lambda: (project.root / "old.pid").exists())
        old_pid = int(project.read("old.pid"))
        mark = daemon.mark()
        project.config(stage.format(name="new"))  # renamed: the same output, another stage
        daemon.wait_event("stage.succeeded", mark, stage="new")
        assert project.read("shared.txt") == "new; old was gone"
        assert not pid_alive(old_pid)
        cancelled = daemon.wait_event("stage.cancelled", mark, stage="old")
        assert cancelled < daemon.wait_event("stage.started", mark, stage="new")
        assert daemon.stop() == 0


def test_a_reload_that_fixes_the_failed_stage_checks_what_it_blocked(project: Project) -> None:
    config = """
[[stage]]
name = "make"
command = ["sh", "-c", "{script}"]
inputs = ["src.txt"]
outputs = ["made.txt"]

[[stage]]
name = "use"
command = ["cp", "made.txt", "used.txt"]
inputs = ["made.txt"]
outputs = ["used.txt"]
"""
    project.write("src.txt", "x")
    project.config(config.format(script="exit 3"))
    with RunningDaemon(project) as daemon:
        idle = daemon.wait_event("watch.idle")
        assert daemon.events[idle]["failing"] == ["make"] and daemon.events[idle]["blocked"] == ["use"]
        project.config(config.format(script="cp src.txt made.txt"))
        daemon.wait_event("stage.succeeded", idle, stage="use")
        assert project.read("used.txt") == "x"
        assert daemon.stop() == 0


def test_restart_on_busy_under_a_stream_of_edits_ends_with_the_final_content(project: Project) -> None:
    project.write(
        "copy.py",
        "import sys, time\ntime.sleep(0.3)\nopen('out.txt', 'w').write(open('in.txt').read())\n",
    )
    project.write("in.txt", "0")
    project.config(
        """
[pipeline]
debounce = "50ms"
on_busy = "restart"

[[stage]]
name = "copy"
command = ["python3", "copy.py"]
inputs = ["in.txt"]
outputs = ["out.txt"]
"""
    )
    with RunningDaemon(project) as daemon:
        mark = daemon.wait_event("watch.idle") + 1
        for number in range(1, 25):
            project.write("in.txt", str(number))
            time.sleep(0.12)  # a person typing and saving: the writer's pace, not a settle wait
        deadline = time.monotonic() + 20
        while project.read("out.txt") != "24":
            assert time.monotonic() < deadline, "the final content never came out"
            time.sleep(0.05)
        end = daemon.wait_event("watch.idle", mark)
        restarts = len(daemon.named("stage.restarting", mark, end))
        cancelled = len(daemon.named("stage.cancelled", mark, end))
        # Each restart stopped exactly the run it meant: one cancel each, never a fresh run.
        assert cancelled <= restarts
        assert daemon.named("stage.failed", mark, end) == []
        assert daemon.stop() == 0


def test_an_invalidate_during_a_run_runs_the_stage_again_after_it(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        hold_slow_stage(daemon, slow, mark)
        first = slow.cli("invalidate", "slow")
        second = slow.cli("invalidate", "slow")
        for proc in (first, second):
            assert proc.returncode == 0
            assert "running now, and runs again once this run ends" in proc.stdout
        (slow.root / "go").write_text("")
        done = daemon.wait_event("stage.succeeded", mark, stage="slow")
        again = daemon.wait_event("stage.started", done, stage="slow")
        assert "forced" in daemon.events[again]["reasons"]
        daemon.wait_event("stage.succeeded", again, stage="slow")
        assert "key=" in slow.entry("slow").read_text()
        assert daemon.stop() == 0


def test_an_invalidate_during_a_first_run_runs_it_again(slow: Project) -> None:
    slow.write("in/slow.txt", "wait")
    with RunningDaemon(slow) as daemon:
        daemon.wait_event("stage.started", stage="slow")
        wait_until(lambda: bool(starts(slow)))
        assert not slow.entry("slow").exists()
        proc = slow.cli("invalidate", "slow")
        assert "runs again once this run ends" in proc.stdout
        mark = daemon.wait_event("stage.invalidated", stage="slow")
        (slow.root / "go").write_text("")
        done = daemon.wait_event("stage.succeeded", stage="slow")
        daemon.wait_event("stage.started", max(done, mark), stage="slow")
        assert daemon.stop() == 0


def test_invalidate_reruns_a_stage_that_never_succeeded(project: Project) -> None:
    # It fails until a file it does not declare appears: only an invalidate can say so.
    project.config(
        SYNC_STAGE
        + """
[[stage]]
name = "site"
command = ["sh", "-c", "test -f ready || { echo not ready >&2; exit 1; }; cp in.txt out.txt"]
inputs = ["in.txt"]
outputs = ["out.txt"]
"""
    )
    project.write("in.txt", "page")
    project.write("sync/token", "0")
    with RunningDaemon(project) as daemon:
        failed = daemon.wait_event("stage.failed", stage="site")
        since = daemon.ready()
        assert since > failed and not project.entry("site").exists()
        project.write("ready", "")
        proc = project.cli("invalidate", "site")
        assert proc.returncode == 0
        assert (
            f"site: invalidated (it had no entry); the daemon (pid {daemon.proc.pid}) runs it next"
            in proc.stdout
        )
        daemon.wait_event("stage.invalidated", since, stage="site")
        daemon.wait_event("stage.succeeded", since, stage="site")
        assert project.read("out.txt") == "page"
        assert daemon.stop() == 0


def test_a_failed_ttl_stage_is_retried_after_its_backoff_not_its_ttl(project: Project) -> None:
    project.config(
        """
[[stage]]
name = "fetch"
command = ["sh", "-c", "echo the service is down >&2; exit 1"]
outputs = ["data.json"]
ttl = "1h"
"""
    )
    with RunningDaemon(project) as daemon:
        failed = daemon.wait_event("stage.failed", stage="fetch")
        scheduled = daemon.wait_event("stage.retry_scheduled", failed, stage="fetch")
        assert daemon.events[scheduled]["retry_in_s"] == 30.0
        assert daemon.stop() == 0


def test_a_ttl_entry_dated_in_the_future_runs_at_once(project: Project) -> None:
    project.config(
        """
[[stage]]
name = "fetch"
command = ["sh", "-c", "date +%s%N > data.txt"]
outputs = ["data.txt"]
ttl = "1h"
"""
    )
    assert project.cli("build").returncode == 0
    ahead = time.time() + 3600  # the clock stepped back an hour since the entry was written
    os.utime(project.entry("fetch"), (ahead, ahead))
    with RunningDaemon(project) as daemon:
        started = daemon.wait_event("stage.started", stage="fetch")
        assert any("future" in reason for reason in daemon.events[started]["reasons"])
        assert daemon.stop() == 0


def test_a_stage_that_keeps_changing_its_own_input_is_held_and_said_once(project: Project) -> None:
    project.write("data/seed.txt", "seed")
    project.config(
        """
[[stage]]
name = "loop"
command = ["sh", "-c", "date +%s%N >> data/stamps.txt; cat data/*.txt > out.txt"]
inputs = ["data/"]
outputs = ["out.txt"]
"""
    )
    with RunningDaemon(project) as daemon:
        warned = daemon.wait_event("stage.self_triggering", stage="loop")
        assert daemon.events[warned]["path"].endswith("data/stamps.txt")
        idle = daemon.wait_event("watch.idle", warned)
        assert daemon.events[idle]["looping"] == ["loop"]
        runs_before = len(daemon.started(0, idle))
        assert runs_before <= 8
        # A change from outside releases it (and it may loop again, a few runs at most).
        project.write("data/seed.txt", "new seed")
        released = daemon.wait_event("stage.released", idle, stage="loop")
        daemon.wait_event("stage.self_triggering", released, stage="loop")
        assert len(daemon.named("stage.self_triggering")) == 2
        assert daemon.stop() == 0


@pytest.mark.parametrize("how", ["deleted", "moved"])
def test_the_output_folder_vanishing_stops_the_daemon_with_one_line(tmp_path: Path, how: str) -> None:
    site = Project(tmp_path / "site")
    site.write("in.txt", "x")
    site.config(
        """
[[stage]]
name = "copy"
command = ["cp", "in.txt", "out.txt"]
inputs = ["in.txt"]
outputs = ["out.txt"]
"""
    )
    with RunningDaemon(site) as daemon:
        daemon.wait_event("watch.idle")
        if how == "deleted":
            # The daemon may still write a file in there while it goes: rm -rf again, as a person would.
            wait_until(lambda: shutil.rmtree(site.root, ignore_errors=True) or not site.root.exists())
        else:
            site.root.rename(tmp_path / "elsewhere")
        gone = daemon.wait_event("watch.output_dir_gone")
        assert daemon.events[gone]["level"] == "error"
        assert daemon.proc.wait(timeout=20) == 1
        assert not any(e.get("level") == "error" for e in daemon.events[gone + 1 :])
    assert not site.root.exists()  # nothing made again under the old path
    assert "Traceback" not in "".join(daemon.stderr)


@pytest.fixture
def big_input(project: Project) -> Iterator[Project]:
    # Sparse: costs no disk, but hashing reads every byte of it.
    with open(project.root / "big.bin", "wb") as handle:
        handle.truncate(3 << 30)
    project.config(
        """
[[stage]]
name = "sum"
command = ["sh", "-c", "wc -c < big.bin > size.txt"]
inputs = ["big.bin"]
outputs = ["size.txt"]
"""
    )
    yield project


def test_watchdog_pings_keep_coming_while_a_big_file_is_hashed(big_input: Project, tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    receiver = NotifySocket(address)
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
    try:
        with RunningDaemon(big_input, env=env) as daemon:
            receiver.receive_until(lambda lines: "READY=1" in lines)
            began = time.monotonic()
            receiver.receive_until(lambda lines: any(line.startswith("STATUS=running") for line in lines), 80)
            hashing_s = time.monotonic() - began
            pings = [at for at, line in receiver.messages if line == "WATCHDOG=1"]
            gaps = [b - a for a, b in itertools.pairwise(pings)]
            assert hashing_s > 0.6, "the check was too quick to show anything"
            assert gaps and max(gaps) < 1.0, gaps
            daemon.stop()
    finally:
        receiver.close()


def test_sigterm_during_a_long_check_stops_at_once(big_input: Project) -> None:
    with RunningDaemon(big_input) as daemon:
        daemon.wait_event("watch.started")
        began = time.monotonic()
        assert daemon.stop(signal.SIGTERM) == 0
        assert time.monotonic() - began < 10
    state = json.loads((big_input.root / "_build/.cache/state.json").read_text())
    assert state["pid"] is None


def test_accept_of_a_stage_running_in_the_daemon_is_refused(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        hold_slow_stage(daemon, slow, mark)
        proc = slow.cli("accept", "slow")
        assert proc.returncode == 1
        assert proc.stderr.strip() == (
            f"slow: not accepted: it is running now (stagewatch watch, pid {daemon.proc.pid});"
            " accept it once the run has ended"
        )
        assert "key=" not in slow.entry("slow").read_text()
        (slow.root / "go").write_text("")
        daemon.wait_event("stage.succeeded", mark, stage="slow")
        assert daemon.stop() == 0


def test_accept_of_a_running_stage_is_refused_before_state_json_says_so(slow: Project) -> None:
    # state.json is written a moment behind a burst of starts: the run's record says it first.
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        hold_slow_stage(daemon, slow, mark)
        state = slow.root / "_build/.cache/state.json"
        recorded = json.loads(state.read_text())
        recorded["stages"]["slow"]["result"] = "succeeded"
        state.write_text(json.dumps(recorded))
        proc = slow.cli("accept", "slow")
        assert proc.returncode == 1
        assert "it is running now" in proc.stderr
        assert "key=" not in slow.entry("slow").read_text()
        (slow.root / "go").write_text("")
        daemon.wait_event("stage.succeeded", mark, stage="slow")
        assert daemon.stop() == 0


def test_accept_of_a_stage_running_in_a_build_is_refused(slow: Project) -> None:
    slow.write("in/slow.txt", "wait")
    build = subprocess.Popen(
        [sys.executable, "-m", "stagewatch", "--config", str(slow.root / "stagewatch.toml"), "build", "slow"],
        cwd=slow.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: bool(starts(slow)))
        proc = slow.cli("accept", "slow")
        assert proc.returncode == 1
        assert f"it is running now (stagewatch build, pid {build.pid})" in proc.stderr
        (slow.root / "go").write_text("")
        assert build.wait(timeout=30) == 0
    finally:
        build.kill()
        build.wait()
    assert slow.cli("accept", "slow").returncode == 0  # once it has ended


def test_kill_9_of_the_daemon_takes_a_stages_grandchildren_with_it(project: Project) -> None:
    project.write(
        "gen.py",
        "import os, time\nopen(f'pids/{os.getpid()}', 'w').close()\ntime.sleep(60)\n",
    )
    (project.root / "pids").mkdir()
    project.config(
        """
[[stage]]
name = "gen"
command = ["sh", "-c", "python3 gen.py & python3 gen.py; wait"]
outputs = ["never.txt"]
"""
    )
    with RunningDaemon(project) as daemon:
        daemon.wait_event("stage.started", stage="gen")
        wait_until(lambda: len(list((project.root / "pids").iterdir())) == 2)
        grandchildren = [int(path.name) for path in (project.root / "pids").iterdir()]
        daemon.stop(signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(pid) for pid in grandchildren))
