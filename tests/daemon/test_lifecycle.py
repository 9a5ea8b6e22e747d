"""The real daemon's life: signals, restarts, the lock, failures, busy stages, reloads, TTLs."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time

import pytest

from tests.helpers.daemon import SLOW, SYNC_STAGE, RunningDaemon, hold_slow_stage, starts
from tests.helpers.project import Project
from tests.helpers.serve import make_site, serve
from tests.helpers.waiting import pid_alive, wait_until

pytestmark = pytest.mark.timeout(90)


def test_sigterm_stops_a_running_stage_and_exits_0_recording_no_success(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        stage_pid = hold_slow_stage(daemon, slow, mark)
        began = time.monotonic()
        assert daemon.stop(signal.SIGTERM) == 0
        assert time.monotonic() - began < 10
        daemon.wait_event("watch.stopped")
    wait_until(lambda: not pid_alive(stage_pid))
    # The entry says a run began and never succeeded: no key, so nothing takes it as fresh.
    entry = slow.entry("slow").read_text()
    assert "pending=" in entry and "key=" not in entry
    assert slow.cli("status", "--json").stdout.count('"state": "stale"') == 1
    state = json.loads((slow.root / "_build/.cache/state.json").read_text())
    assert state["stages"]["slow"]["result"] == "cancelled"
    assert not (slow.root / "_build/.cache/.lock").read_text().strip()


def test_sigkill_mid_run_kills_the_stage_and_a_restart_reruns_it(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        stage_pid = hold_slow_stage(daemon, slow, mark)
        daemon.stop(signal.SIGKILL)
    wait_until(lambda: not pid_alive(stage_pid))  # no orphan racing the next daemon
    (slow.root / "go").write_text("")
    with RunningDaemon(slow) as again:
        caught_up = again.wait_event("watch.idle")
        assert "slow" in again.started(until=caught_up)
        assert slow.read("out/slow.txt") == "wait"
        assert again.stop() == 0


def test_a_second_daemon_is_refused(slow: Project) -> None:
    with RunningDaemon(slow) as first:
        first.ready()
        with RunningDaemon(slow) as second:
            assert second.proc.wait(timeout=30) == 1
            second.stop()
        message = "".join(second.stderr)
        assert f"stagewatch watch (pid {first.proc.pid}) is already running" in message
        assert first.proc.poll() is None
        first.stop()


def test_build_refuses_while_a_daemon_watches(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        daemon.ready()
        proc = slow.cli("build")
        assert proc.returncode == 1
        assert f"(pid {daemon.proc.pid})" in proc.stderr and "stagewatch invalidate STAGE" in proc.stderr
        status = json.loads(slow.cli("status", "--json").stdout)
        assert status["locked_by"] == {"pid": daemon.proc.pid, "mode": "watch"}
        daemon.stop()


def test_a_serve_is_named_serve_by_the_commands_beside_it(project: Project) -> None:
    make_site(project)
    served = serve(project)
    with served.daemon as daemon:
        pid = daemon.proc.pid
        proc = project.cli("build")
        assert proc.returncode == 1
        assert f"stagewatch serve (pid {pid}) is already running" in proc.stderr
        assert "stagewatch invalidate STAGE" in proc.stderr
        assert project.cli("status").stdout.splitlines()[0] == f"stagewatch serve running (pid {pid})"
        status = json.loads(project.cli("status", "--json").stdout)
        assert status["locked_by"] == {"pid": pid, "mode": "serve"}
        since = daemon.mark()
        assert project.cli("invalidate", "pages").stdout == "pages: invalidated\n"
        daemon.wait_event("stage.succeeded", since, stage="pages")
        assert daemon.stop() == 0


def test_invalidate_makes_the_daemon_rerun_a_stage(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        assert slow.cli("invalidate", "slow").returncode == 0
        end = daemon.barrier(mark)
        assert sorted(daemon.started(mark, end)) == ["slow", "sync", "sync"]
        daemon.stop()


def test_a_failing_stage_leaves_the_daemon_running(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        slow.write("in/slow.txt", "FAIL")
        failed = daemon.wait_event("stage.failed", mark, stage="slow")
        assert daemon.events[failed]["exit_code"] == 3
        slow.write("in/slow.txt", "fixed")
        daemon.wait_event("stage.succeeded", failed, stage="slow")
        assert slow.read("out/slow.txt") == "fixed"
        assert daemon.stop() == 0


def test_a_failed_stage_is_not_retried_until_something_changes(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        slow.write("in/slow.txt", "FAIL")
        failed = daemon.wait_event("stage.failed", mark, stage="slow")
        (slow.root / "in/slow.txt").touch()  # checked again: same inputs and code as the failure
        end = daemon.barrier(failed)
        assert daemon.started(failed, end) == ["sync", "sync"]
        daemon.stop()


def test_a_change_during_a_run_reruns_after_it_with_the_final_content(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        hold_slow_stage(daemon, slow, mark)
        slow.write("in/slow.txt", "wait then final")
        changed = daemon.wait_event("watch.changed", mark)
        assert "slow" in daemon.events[changed]["stages"]
        (slow.root / "go").write_text("")
        first_done = daemon.wait_event("stage.succeeded", mark, stage="slow")
        second_done = daemon.wait_event("stage.succeeded", first_done + 1, stage="slow")
        assert [text for _, text in starts(slow)][-2:] == ["wait", "wait then final"]
        assert slow.read("out/slow.txt") == "wait then final"
        # Never two runs of one stage at once: the second started after the first ended.
        second_start = daemon.wait_event("stage.started", first_done, stage="slow")
        assert first_done < second_start < second_done
        daemon.stop()


def test_on_busy_restart_stops_the_run_and_starts_again(slow: Project) -> None:
    slow.config(SLOW.format(extra='on_busy = "restart"'))
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        first_pid = hold_slow_stage(daemon, slow, mark)
        slow.write("in/slow.txt", "restarted")
        cancelled = daemon.wait_event("stage.cancelled", mark, stage="slow")
        daemon.wait_event("stage.succeeded", cancelled, stage="slow")
        assert not pid_alive(first_pid)
        assert slow.read("out/slow.txt") == "restarted"
        daemon.stop()


def test_editing_the_config_adds_a_stage(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        slow.config(
            SLOW.format(extra="")
            + '\n[[stage]]\nname = "extra"\ncommand = ["sh", "-c", "echo > out/extra.txt"]\n'
            + 'outputs = ["out/extra.txt"]\nafter = ["sync"]\n'
        )
        reloaded = daemon.wait_event("config.reloaded", mark)
        assert daemon.events[reloaded]["added"] == ["extra"]
        daemon.wait_event("stage.succeeded", reloaded, stage="extra")
        assert (slow.root / "out/extra.txt").exists()
        daemon.stop()


def test_an_invalid_config_is_logged_and_the_old_one_keeps_running(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        slow.config(SLOW.format(extra='inputz = ["typo"]'))
        invalid = daemon.wait_event("config.invalid", mark)
        assert 'unknown key "inputz" (did you mean "inputs"?)' in daemon.events[invalid]["problems"][0]
        slow.write("in/slow.txt", "still watched")
        daemon.wait_event("stage.succeeded", invalid, stage="slow")
        assert slow.read("out/slow.txt") == "still watched"
        daemon.stop()


def test_sighup_reloads_the_config(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        daemon.proc.send_signal(signal.SIGHUP)
        reloaded = daemon.wait_event("config.unchanged", mark)
        assert daemon.events[reloaded]["why"] == "SIGHUP"
        assert daemon.proc.poll() is None
        daemon.stop()


def test_ttl_stage_reruns_when_its_entry_expires(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "live"
        command = ["sh", "-c", "date +%s.%N >> fetches.log; echo data > live.json"]
        outputs = ["live.json"]
        ttl = "1s"
        """
    )
    with RunningDaemon(project) as daemon:
        first = daemon.wait_event("stage.succeeded", stage="live")
        again = daemon.wait_event("stage.started", first, stage="live")
        assert daemon.events[again]["reasons"][0].startswith("ttl expired")
        daemon.wait_event("stage.succeeded", again, stage="live")
        times = [float(line) for line in project.read("fetches.log").split()]
        assert times[1] - times[0] >= 0.9  # not before its entry was a ttl old
        daemon.stop()


def test_failing_ttl_stage_backs_off_instead_of_spinning(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "flaky"
        command = ["sh", "-c", "date +%s.%N >> tries.log; exit 1"]
        ttl = "1s"
        """
    )
    with RunningDaemon(project) as daemon:
        first = daemon.wait_event("stage.failed", stage="flaky")
        second = daemon.wait_event("stage.failed", first + 1, stage="flaky")
        daemon.wait_event("stage.failed", second + 1, stage="flaky")
        tries = [float(line) for line in project.read("tries.log").split()]
        gaps = [b - a for a, b in itertools.pairwise(tries)]
        assert all(gap >= 0.9 for gap in gaps), gaps  # the backoff, capped at the 1 s ttl
        assert daemon.proc.poll() is None
        daemon.stop()


def test_identical_output_into_a_watched_folder_does_not_loop(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "gen"
        command = ["sh", "-c", "mkdir -p gen && echo same > gen/x.txt"]
        inputs = ["src.txt"]
        outputs = ["gen/"]

        [[stage]]
        name = "use"
        command = ["sh", "-c", "cat gen/x.txt > used.txt"]
        inputs = ["gen/"]
        outputs = ["used.txt"]

        """
        + SYNC_STAGE
    )
    project.write("src.txt", "1")
    project.write("sync/token", "0")
    with RunningDaemon(project) as daemon:
        mark = daemon.ready()
        project.write("src.txt", "2")  # gen reruns, rewriting the same bytes
        end = daemon.barrier(mark)
        assert sorted(daemon.started(mark, end)) == ["gen", "sync", "sync"]
        quiet = daemon.barrier(end)
        assert daemon.started(end, quiet) == ["sync", "sync"]
        daemon.stop()


def test_status_names_the_daemon_and_its_running_stage(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        hold_slow_stage(daemon, slow, mark)
        proc = slow.cli("status")
        assert proc.stdout.splitlines()[0] == f"stagewatch watch running (pid {daemon.proc.pid})"
        rows = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines()[2:]}
        assert rows["slow"] == "running"
        (slow.root / "go").write_text("")
        daemon.stop()


def test_the_lock_names_the_daemon_pid(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        daemon.ready()
        lock = (slow.root / "_build/.cache/.lock").read_text().split()
        assert lock == [str(daemon.proc.pid), "watch"]
        daemon.stop()
    assert os.path.exists(slow.root / "_build/.cache/.lock")


def test_invalidate_after_an_edit_triggered_run_still_reruns(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        slow.write("in/slow.txt", "edited")
        edited = daemon.barrier(mark)
        assert "slow" in daemon.started(mark, edited)
        assert slow.cli("invalidate", "slow").stdout == "slow: invalidated\n"
        end = daemon.barrier(edited)
        assert sorted(daemon.started(edited, end)) == ["slow", "sync", "sync"]
        daemon.stop()


def test_invalidate_retries_a_failed_stage(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        slow.write("in/slow.txt", "FAIL")
        failed = daemon.wait_event("stage.failed", mark, stage="slow")
        assert slow.cli("invalidate", "slow").stdout == "slow: invalidated\n"
        daemon.wait_event("stage.failed", failed + 1, stage="slow")  # tried again, on request
        daemon.stop()


def test_an_unchanged_save_ends_with_idle(slow: Project) -> None:
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        slow.write("in/slow.txt", "first")  # the same bytes
        changed = daemon.wait_event("watch.changed", mark)
        assert daemon.events[changed]["paths"] == ["in/slow.txt"]
        daemon.wait_event("watch.idle", changed)
        assert daemon.started(mark) == []
        daemon.stop()


def test_a_config_put_back_after_a_mistake_is_said_to_be_valid_again(slow: Project) -> None:
    good = (slow.root / "stagewatch.toml").read_text()
    with RunningDaemon(slow) as daemon:
        mark = daemon.ready()
        slow.config(SLOW.format(extra='timeuot = "5m"'))
        invalid = daemon.wait_event("config.invalid", mark)
        (slow.root / "stagewatch.toml").write_text(good)
        daemon.wait_event("config.restored", invalid)
        daemon.stop()


CHAIN = (
    """
[pipeline]
debounce = "100ms"

[[stage]]
name = "a"
command = ["sh", "-c", "! grep -q FAIL a.in && cp a.in a.out"]
inputs = ["a.in"]
outputs = ["a.out"]

[[stage]]
name = "c"
command = ["sh", "-c", "cat a.out c.in > c.out"]
inputs = ["a.out", "c.in"]
outputs = ["c.out"]
{extra}
"""
    + SYNC_STAGE
)


def test_a_blocked_stage_runs_its_own_change_once_its_blocker_recovers(project: Project) -> None:
    project.config(CHAIN.format(extra=""))
    for name, text in (("a.in", "a1\n"), ("c.in", "c1\n"), ("sync/token", "0")):
        project.write(name, text)
    with RunningDaemon(project) as daemon:
        mark = daemon.ready()
        project.write("a.in", "FAIL\n")
        failed = daemon.wait_event("stage.failed", mark, stage="a")
        project.write("c.in", "c2\n")
        daemon.wait_event("stage.blocked", failed, stage="c")
        project.write("a.in", "a1\n")  # a recovers with the same output: only c's own change is left
        daemon.wait_event("stage.succeeded", failed, stage="c")
        assert project.read("c.out") == "a1\nc2\n"
        daemon.stop()


def test_a_ttl_stage_below_a_failed_stage_waits_quietly(project: Project) -> None:
    project.config(CHAIN.format(extra='ttl = "1s"'))
    for name, text in (("a.in", "FAIL\n"), ("c.in", "c1\n"), ("sync/token", "0")):
        project.write(name, text)
    with RunningDaemon(project) as daemon:
        mark = daemon.ready()
        end = daemon.barrier(mark)
        assert len(daemon.named("stage.blocked")) <= 1  # said once, not spun on every tick
        assert "c" not in daemon.started(mark, end)
        project.write("a.in", "a1\n")
        daemon.wait_event("stage.succeeded", end, stage="c")
        daemon.stop()


def test_fixing_a_stage_in_the_config_clears_its_failure(slow: Project) -> None:
    slow.config(SLOW.format(extra="").replace('outputs = ["out/slow.txt"]', 'outputs = ["out/slo.txt"]'))
    with RunningDaemon(slow) as daemon:
        daemon.wait_event("stage.failed", stage="slow")  # "declared output missing: out/slo.txt"
        mark = daemon.mark()
        slow.config(SLOW.format(extra=""))  # outputs are not in the key: only the reload can clear it
        daemon.wait_event("stage.succeeded", mark, stage="slow")
        daemon.stop()


def test_a_stage_module_created_after_start_is_seen(project: Project) -> None:
    project.config('[[stage]]\nname = "gen"\nmodule = "pipeline.gen"\noutputs = ["gen.txt"]\n')
    project.write("pipeline/__init__.py", "")
    with RunningDaemon(project) as daemon:
        failed = daemon.wait_event("stage.failed", stage="gen")
        project.write("pipeline/gen.py", "def run(out):\n    (out / 'gen.txt').write_text('made')\n")
        daemon.wait_event("stage.succeeded", failed, stage="gen")
        assert project.read("gen.txt") == "made"
        daemon.stop()
