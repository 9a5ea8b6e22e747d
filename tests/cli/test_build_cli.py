"""`stagewatch build` and friends, driven through the real CLI on a temporary project."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stagewatch.lock import PipelineLock
from tests.helpers.project import Project

CHAIN = """
[pipeline]
jobs = 2

[[stage]]
name = "upper"
module = "stages.upper"
inputs = ["src/a.txt"]
outputs = ["build/upper.txt"]

[[stage]]
name = "count"
module = "stages.count"
inputs = ["build/upper.txt"]
outputs = ["build/count.txt"]
"""


@pytest.fixture
def chain(project: Project) -> Project:
    project.write("stages/__init__.py", "")
    project.write(
        "stages/common.py",
        """
        def record(out, name):
            with open(out / "runs.log", "a") as log:
                log.write(name + "\\n")
        """,
    )
    project.write(
        "stages/upper.py",
        """
        import sys
        from stages.common import record

        def run(out):
            record(out, "upper")
            text = (out / "src/a.txt").read_text()
            if "FAIL" in text:
                print("upper refuses this input", file=sys.stderr)
                sys.exit(4)
            (out / "build").mkdir(exist_ok=True)
            (out / "build/upper.txt").write_text(text.upper())
        """,
    )
    project.write(
        "stages/count.py",
        """
        from stages import common

        def run(out):
            common.record(out, "count")
            text = (out / "build/upper.txt").read_text()
            (out / "build/count.txt").write_text(str(len(text)))
        """,
    )
    project.write("src/a.txt", "abc")
    project.config(CHAIN)
    return project


def runs(project: Project) -> list[str]:
    """Stages run since the last call, in order."""
    log = project.root / "runs.log"
    if not log.exists():
        return []
    names = log.read_text().split()
    log.unlink()
    return names


def events(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def named(proc: subprocess.CompletedProcess[str], event: str) -> list[dict[str, Any]]:
    return [e for e in events(proc) if e["event"] == event]


def build(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    proc = project.cli("build", *args)
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc


def test_first_build_runs_all_and_second_runs_none(chain: Project) -> None:
    assert build(chain).returncode == 0
    assert runs(chain) == ["upper", "count"]
    assert chain.read("build/count.txt") == "3"
    assert build(chain).returncode == 0
    assert runs(chain) == []


def test_identical_rewrite_runs_nothing(chain: Project) -> None:
    build(chain)
    runs(chain)
    (chain.root / "src/a.txt").write_text("abc")
    future = time.time() + 5
    os.utime(chain.root / "src/a.txt", (future, future))
    assert build(chain).returncode == 0
    assert runs(chain) == []


def test_content_change_reruns_the_stage_and_its_downstream(chain: Project) -> None:
    build(chain)
    runs(chain)
    chain.write("src/a.txt", "abcd")
    proc = build(chain)
    assert runs(chain) == ["upper", "count"]
    assert chain.read("build/count.txt") == "4"
    started = named(proc, "stage.started")
    assert started[0]["reasons"] == ["input changed: src/a.txt"]
    assert started[1]["reasons"] == ["input changed: build/upper.txt"]


def test_early_cutoff_skips_downstream_when_output_is_identical(chain: Project) -> None:
    build(chain)
    runs(chain)
    chain.write("src/a.txt", "ABC")  # upper-cases to the same bytes
    assert build(chain).returncode == 0
    assert runs(chain) == ["upper"]


def test_module_edit_reruns_only_that_stage(chain: Project) -> None:
    build(chain)
    runs(chain)
    with open(chain.root / "stages/count.py", "a") as handle:
        handle.write("\n# a comment changes the code\n")
    proc = build(chain)
    assert runs(chain) == ["count"]
    assert named(proc, "stage.started")[0]["reasons"] == ["code changed: stages/count.py"]


def test_helper_module_edit_reruns_every_stage_importing_it(chain: Project) -> None:
    build(chain)
    runs(chain)
    with open(chain.root / "stages/common.py", "a") as handle:
        handle.write("\nVERSION = 2\n")
    build(chain)
    assert runs(chain) == ["upper", "count"]


def test_missing_output_reruns_the_stage(chain: Project) -> None:
    build(chain)
    runs(chain)
    (chain.root / "build/count.txt").unlink()
    proc = build(chain)
    assert runs(chain) == ["count"]
    assert named(proc, "stage.started")[0]["reasons"] == ["output missing: build/count.txt"]


def test_failure_writes_no_entry_and_blocks_downstream(chain: Project) -> None:
    build(chain)
    runs(chain)
    chain.write("src/a.txt", "FAIL")
    proc = build(chain)
    assert proc.returncode == 1
    assert runs(chain) == ["upper"]
    failed = named(proc, "stage.failed")
    assert failed[0]["stage"] == "upper"
    assert failed[0]["exit_code"] == 4
    assert failed[0]["tail"] == ["upper refuses this input"]
    assert [(e["stage"], e["by"]) for e in named(proc, "stage.blocked")] == [("count", "upper")]
    assert named(proc, "build.finished")[0]["failed"] == 1
    assert named(proc, "build.finished")[0]["blocked"] == 1
    # The failed run removed the old entry: upper runs again next time.
    assert build(chain).returncode == 1
    assert runs(chain) == ["upper"]


def test_failed_first_run_leaves_no_entry(chain: Project) -> None:
    chain.write("src/a.txt", "FAIL")
    assert build(chain).returncode == 1
    assert not chain.entry("upper").exists()
    assert not chain.entry("count").exists()


@pytest.mark.timeout(30)
def test_timeout_kills_the_stage_process_group(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "hang"
        command = ["sh", "-c", "sleep 60 & echo $! > child.pid; wait"]
        timeout = "1s"
        """
    )
    proc = build(project)
    assert proc.returncode == 1
    assert named(proc, "stage.failed")[0]["error"] == "timed out after 1.0s"
    child = int(project.read("child.pid"))
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and "Z" not in _proc_state(child):
        assert time.monotonic() < deadline, "the stage's child outlived the timeout"
        time.sleep(0.02)
    assert not project.entry("hang").exists()


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (FileNotFoundError, IndexError):
        return "Z"


@pytest.mark.timeout(60)
def test_input_edited_while_the_stage_runs_is_not_recorded_as_built(chain: Project) -> None:
    chain.write(
        "stages/upper.py",
        """
        import time
        from stages.common import record

        def run(out):
            record(out, "upper")
            text = (out / "src/a.txt").read_text()
            (out / "started").write_text("")
            deadline = time.monotonic() + 30
            while not (out / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            (out / "build").mkdir(exist_ok=True)
            (out / "build/upper.txt").write_text(text.upper())
        """,
    )
    cmd = [sys.executable, "-m", "stagewatch", "--config", str(chain.root / "stagewatch.toml"), "build"]
    with subprocess.Popen(cmd, cwd=chain.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as running:
        deadline = time.monotonic() + 30
        while not (chain.root / "started").exists():
            assert time.monotonic() < deadline and running.poll() is None
            time.sleep(0.01)
        chain.write("src/a.txt", "edited during the run")
        (chain.root / "go").write_text("")
        assert running.wait(timeout=30) == 0
    assert runs(chain) == ["upper", "count"]
    assert chain.read("build/upper.txt") == "ABC"  # what the run read
    (chain.root / "started").unlink()
    proc = build(chain)
    assert runs(chain) == ["upper", "count"]
    assert named(proc, "stage.started")[0]["reasons"] == ["input changed: src/a.txt"]
    assert chain.read("build/upper.txt") == "EDITED DURING THE RUN"


def _age_entry(project: Project, stage: str, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(project.entry(stage), (past, past))


def test_ttl_expiry_reruns_a_stage_with_inputs(chain: Project) -> None:
    chain.config(CHAIN.replace('outputs = ["build/upper.txt"]', 'outputs = ["build/upper.txt"]\nttl = "1h"'))
    build(chain)
    runs(chain)
    assert build(chain).returncode == 0
    assert runs(chain) == []
    _age_entry(chain, "upper", 3601)
    proc = build(chain)
    assert runs(chain) == ["upper"]  # same output bytes: count is cut off
    assert named(proc, "stage.started")[0]["reasons"][0].startswith("ttl expired: entry is 1h")


def test_no_input_ttl_stage_is_skipped_until_it_expires(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "fetch"
        command = ["sh", "-c", "echo fetched >> runs.log; date > live.json"]
        outputs = ["live.json"]
        ttl = "6h"
        """
    )
    build(project)
    assert runs(project) == ["fetched"]
    build(project)
    assert runs(project) == []
    _age_entry(project, "fetch", 6 * 3600 + 1)
    build(project)
    assert runs(project) == ["fetched"]


def test_an_entry_dated_in_the_future_is_expired_everywhere(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "fetch"
        command = ["sh", "-c", "echo fetched >> runs.log; date > live.json"]
        outputs = ["live.json"]
        ttl = "6h"
        """
    )
    build(project)
    assert runs(project) == ["fetched"]
    _age_entry(project, "fetch", -3600)  # the clock stepped back an hour after the run
    why = r"ttl expired: the entry is dated (1h|59m \d+s) in the future \(clock stepped back\?\)"
    status = project.cli("status", "--json")
    row = json.loads(status.stdout)["stages"][0]
    assert (row["state"], row["ttl_left_s"]) == ("stale", 0.0)
    assert len(row["reasons"]) == 1 and re.fullmatch(why, row["reasons"][0])
    explain = project.cli("explain", "fetch").stdout
    assert re.search(f"^    - {why}$", explain, re.MULTILINE)
    assert re.search(r"^  ttl: 6h, entry dated (1h|59m \d+s) in the future: due now$", explain, re.MULTILINE)
    assert re.search(f"^run    fetch  {why}$", build(project, "--dry-run").stdout, re.MULTILINE)
    proc = build(project)
    reasons = named(proc, "stage.started")[0]["reasons"]
    assert len(reasons) == 1 and re.fullmatch(why, reasons[0])
    assert runs(project) == ["fetched"]
    assert build(project).returncode == 0
    assert runs(project) == []  # the new entry is dated now: fresh again


def test_stage_without_inputs_or_ttl_runs_every_build(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "always"
        command = ["sh", "-c", "echo always >> runs.log"]
        """
    )
    build(project)
    build(project)
    assert runs(project) == ["always", "always"]
    assert project.entry("always").exists()  # every success writes an entry (for the daemon's TTLs)


def test_missing_explicit_input_runs_the_stage_and_writes_no_entry(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "needs"
        command = ["sh", "-c", "echo ran >> runs.log; cat missing.txt > out.txt"]
        inputs = ["missing.txt"]
        outputs = ["out.txt"]
        """
    )
    proc = build(project)
    assert proc.returncode == 1
    assert runs(project) == ["ran"]
    assert named(proc, "stage.started")[0]["reasons"][0] == "declared file missing: missing.txt"
    assert not project.entry("needs").exists()


def test_force_reruns_fresh_stages(chain: Project) -> None:
    build(chain)
    runs(chain)
    build(chain, "--force")
    assert runs(chain) == ["upper", "count"]


def test_dry_run_runs_nothing_and_says_why(chain: Project) -> None:
    build(chain)
    runs(chain)
    chain.write("src/a.txt", "xyz")
    proc = build(chain, "--dry-run")
    assert proc.returncode == 0
    assert runs(chain) == []
    assert "run    upper  input changed: src/a.txt" in proc.stdout
    assert "run    count  runs after upstream upper, if its outputs change" in proc.stdout
    assert "2 of 2 stages would run" in proc.stdout


def test_named_stage_builds_with_its_upstream_only(chain: Project) -> None:
    chain.config(CHAIN + '\n[[stage]]\nname = "other"\ncommand = ["sh", "-c", "echo other >> runs.log"]\n')
    build(chain, "count")
    assert runs(chain) == ["upper", "count"]
    build(chain, "other")
    assert runs(chain) == ["other"]


def test_unknown_stage_name_is_a_usage_error(chain: Project) -> None:
    proc = build(chain, "nope")
    assert proc.returncode == 2
    assert proc.stderr == 'stagewatch: no stage named "nope"; stages: upper, count\n'
    near = build(chain, "uper")
    assert near.returncode == 2
    assert 'no stage named "uper" (did you mean "upper"?)' in near.stderr


@pytest.mark.timeout(60)
def test_independent_stages_run_in_parallel(project: Project) -> None:
    # Each stage waits until the other has started: they pass only when run at the same time.
    wait_for = "touch {me}; for i in $(seq 200); do [ -e {other} ] && exit 0; sleep 0.05; done; exit 1"
    project.config(
        f"""
        [pipeline]
        jobs = 2
        [[stage]]
        name = "left"
        command = ["sh", "-c", "{wait_for.format(me="left.on", other="right.on")}"]
        [[stage]]
        name = "right"
        command = ["sh", "-c", "{wait_for.format(me="right.on", other="left.on")}"]
        """
    )
    proc = build(project)
    assert proc.returncode == 0, proc.stdout


def test_build_refuses_while_another_stagewatch_holds_the_lock(chain: Project) -> None:
    with PipelineLock(chain.root) as lock:
        lock.acquire("watch")
        proc = build(chain)
    assert proc.returncode == 1
    assert f"stagewatch watch (pid {os.getpid()}) is already running" in proc.stderr
    assert "stagewatch invalidate STAGE" in proc.stderr
    assert runs(chain) == []


def test_json_logs_are_one_object_per_line_with_an_event(chain: Project) -> None:
    proc = build(chain)
    lines = proc.stdout.splitlines()
    assert lines
    for line in lines:
        record = json.loads(line)
        assert isinstance(record["event"], str) and "." in record["event"]
    outputs = named(proc, "stage.output")
    assert outputs == [] or all("stage" in e and "line" in e for e in outputs)


def test_corrupt_entry_reruns_with_a_warning(chain: Project) -> None:
    build(chain)
    runs(chain)
    chain.entry("upper").write_text("key=not-a-key\n")
    proc = build(chain)
    assert proc.returncode == 0
    assert runs(chain) == ["upper"]
    warnings = named(proc, "cache.entry_corrupt")
    assert warnings and warnings[0]["stage"] == "upper"


def test_legacy_entry_is_honoured_by_build(chain: Project) -> None:
    build(chain)
    runs(chain)
    key = dict(line.split("=", 1) for line in chain.entry("upper").read_text().splitlines())["key"]
    chain.entry("upper").write_text(key + "\n")
    build(chain)
    assert runs(chain) == []


def test_explain_names_what_changed(chain: Project) -> None:
    build(chain)
    chain.write("src/a.txt", "changed")
    proc = chain.cli("explain", "upper")
    assert proc.returncode == 0
    assert "input changed: src/a.txt" in proc.stdout
    assert "last successful run:" in proc.stdout


def test_explain_says_fresh_and_shows_ttl(chain: Project) -> None:
    chain.config(CHAIN.replace('outputs = ["build/count.txt"]', 'outputs = ["build/count.txt"]\nttl = "2h"'))
    build(chain)
    proc = chain.cli("explain", "count")
    assert "fresh: inputs, code and outputs match the last successful run" in proc.stdout
    assert "ttl: 2h, entry age" in proc.stdout


def test_status_json_follows_the_stages_through_their_states(chain: Project) -> None:
    def states() -> dict[str, str]:
        proc = chain.cli("status", "--json")
        assert proc.returncode == 0
        return {row["name"]: row["state"] for row in json.loads(proc.stdout)["stages"]}

    assert states() == {"upper": "never run", "count": "never run"}
    build(chain)
    assert states() == {"upper": "fresh", "count": "fresh"}
    chain.write("src/a.txt", "FAIL")
    assert states() == {"upper": "stale", "count": "fresh"}
    build(chain)
    assert states() == {"upper": "failed", "count": "fresh"}


def test_status_of_a_failed_stage_leads_with_what_went_wrong(project: Project) -> None:
    project.write("pipeline/__init__.py", "")
    project.write("pipeline/fetch.py", "def run(out):\n    raise ConnectionError('the service is down')\n")
    project.config(
        '[[stage]]\nname = "fetch"\nmodule = "pipeline.fetch"\noutputs = ["data.json"]\nttl = "1h"\n'
    )
    assert project.cli("build").returncode == 1
    row = json.loads(project.cli("status", "--json").stdout)["stages"][0]
    assert row["state"] == "failed"
    assert row["reasons"][0] == "last run failed: exit 1: ConnectionError: the service is down"
    assert "its last run failed or was interrupted" not in row["reasons"]


def test_status_table_is_readable(chain: Project) -> None:
    build(chain)
    proc = chain.cli("status")
    assert proc.stdout.splitlines()[0] == "no daemon watching this pipeline"
    assert proc.stdout.splitlines()[1].split() == ["STAGE", "STATE", "LAST", "SUCCESS", "TTL", "LEFT", "WHY"]
    assert proc.stdout.splitlines()[2].split()[:2] == ["upper", "fresh"]


def test_invalidate_makes_a_stage_run_next_build(chain: Project) -> None:
    build(chain)
    runs(chain)
    proc = chain.cli("invalidate", "count")
    assert proc.returncode == 0
    assert proc.stdout == "count: invalidated\n"
    build(chain)
    assert runs(chain) == ["count"]


def test_invalidate_all_and_its_usage_errors(chain: Project) -> None:
    build(chain)
    runs(chain)
    assert chain.cli("invalidate").returncode == 2
    assert chain.cli("invalidate", "ghost").returncode == 2
    assert chain.cli("invalidate", "--all").returncode == 0
    build(chain)
    assert runs(chain) == ["upper", "count"]


def test_accept_records_a_cosmetic_edit_without_running(chain: Project) -> None:
    build(chain)
    runs(chain)
    chain.write("src/a.txt", "abc ")
    proc = chain.cli("accept", "upper")
    assert proc.returncode == 0
    assert "upper: accepted" in proc.stdout
    build(chain)
    assert runs(chain) == []


def test_accept_refuses_when_outputs_are_missing(chain: Project) -> None:
    proc = chain.cli("accept", "upper")
    assert proc.returncode == 1
    assert "upper: not accepted: output missing: build/upper.txt" in proc.stderr
    assert not chain.entry("upper").exists()


def test_graph_formats(chain: Project) -> None:
    text = chain.cli("graph").stdout
    assert text.splitlines() == ["upper", "count", '  <- upper  ("build/upper.txt")']
    data = json.loads(chain.cli("graph", "--format", "json").stdout)
    assert data["order"] == ["upper", "count"]
    assert data["edges"][0]["from"] == "upper" and data["edges"][0]["to"] == "count"
    dot = chain.cli("graph", "--format", "dot").stdout
    assert dot.startswith("digraph stagewatch {") and '"upper" -> "count"' in dot


def test_check_prints_the_stages_in_order(chain: Project) -> None:
    proc = chain.cli("check")
    assert proc.returncode == 0
    assert "valid, 2 stages" in proc.stdout
    assert "  1. upper: stages.upper:run (1 input, 1 output)" in proc.stdout


def test_config_from_the_environment_variable(chain: Project) -> None:
    env = {**os.environ, "STAGEWATCH_CONFIG": str(chain.root / "stagewatch.toml")}
    proc = subprocess.run(
        [sys.executable, "-m", "stagewatch", "check"],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0
    assert "valid, 2 stages" in proc.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("stagewatch")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stdout.startswith("stagewatch ")


def test_failed_run_never_leaves_its_partial_output_marked_fresh(chain: Project) -> None:
    build(chain)
    runs(chain)
    # upper writes its output, then fails: the output on disk is no longer what the entry vouched for.
    chain.write(
        "stages/upper.py",
        """
        import sys
        from stages.common import record

        def run(out):
            record(out, "upper")
            text = (out / "src/a.txt").read_text()
            (out / "build/upper.txt").write_text(text.upper() + " (partial)")
            if "FAIL" in text:
                sys.exit(4)
        """,
    )
    build(chain)  # the code changed: upper runs, succeeds
    runs(chain)
    chain.write("src/a.txt", "FAIL")
    assert build(chain).returncode == 1
    assert runs(chain) == ["upper"]
    chain.write("src/a.txt", "abc")  # back to the inputs of the last success
    assert build(chain).returncode == 0
    assert runs(chain) == ["upper"]  # count is cut off: upper's output is back to what count read
    assert chain.read("build/upper.txt") == "ABC (partial)"


def test_exit_zero_with_a_declared_input_missing_is_a_failure(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "lenient"
        command = ["sh", "-c", "echo made > out.txt"]
        inputs = ["missing.txt"]
        outputs = ["out.txt"]
        """
    )
    proc = build(project)
    assert proc.returncode == 1
    assert named(proc, "stage.failed")[0]["error"] == "exit 0 but declared file missing: missing.txt"
    assert not project.entry("lenient").exists()


def test_missing_module_fails_in_one_line_without_starting(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "ghost"
        module = "nosuch.mod"
        """
    )
    proc = build(project)
    assert proc.returncode == 1
    failed = named(proc, "stage.failed")[0]
    assert failed["error"] == f"module 'nosuch.mod' not found on python_path ({project.root})"
    assert named(proc, "stage.output") == []


def test_force_with_a_named_stage_forces_only_that_stage(chain: Project) -> None:
    build(chain)
    runs(chain)
    build(chain, "count", "--force")
    assert runs(chain) == ["count"]


def test_dry_run_does_not_count_an_order_only_upstream(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "clock"
        command = ["sh", "-c", "date > clock.txt"]
        outputs = ["clock.txt"]

        [[stage]]
        name = "report"
        command = ["sh", "-c", "cat in.txt > report.txt"]
        inputs = ["in.txt"]
        outputs = ["report.txt"]
        after = ["clock"]
        """
    )
    project.write("in.txt", "x")
    build(project)
    proc = build(project, "--dry-run")
    assert "run    clock   no inputs and no ttl: runs every time" in proc.stdout
    assert "fresh  report" in proc.stdout


def test_quiet_console_build_shows_no_stage_output(chain: Project) -> None:
    cmd = [sys.executable, "-m", "stagewatch", "--config", str(chain.root / "stagewatch.toml")]
    chain.write(
        "stages/count.py",
        "def run(out):\n    print('chatty')\n    (out / 'build/count.txt').write_text('1')\n",
    )
    proc = subprocess.run(
        [*cmd, "--log-format", "console", "-q", "build"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0
    assert "chatty" not in proc.stdout
    loud = subprocess.run(
        [*cmd, "--log-format", "console", "build", "--force"], capture_output=True, text=True, timeout=30
    )
    assert "count | chatty" in loud.stdout


@pytest.mark.timeout(60)
def test_status_shows_a_stage_running_in_a_build(chain: Project) -> None:
    chain.write(
        "stages/upper.py",
        """
        import time

        def run(out):
            (out / "started").write_text("")
            deadline = time.monotonic() + 30
            while not (out / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            (out / "build").mkdir(exist_ok=True)
            (out / "build/upper.txt").write_text("X")
        """,
    )
    cmd = [sys.executable, "-m", "stagewatch", "--config", str(chain.root / "stagewatch.toml"), "build"]
    with subprocess.Popen(
        cmd, cwd=chain.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as running:
        deadline = time.monotonic() + 30
        while not (chain.root / "started").exists():
            assert time.monotonic() < deadline and running.poll() is None
            time.sleep(0.01)
        rows = {r["name"]: r for r in json.loads(chain.cli("status", "--json").stdout)["stages"]}
        (chain.root / "go").write_text("")
        assert running.wait(timeout=30) == 0
    assert rows["upper"]["state"] == "running"
    assert rows["count"]["state"] == "never run"


def test_symlinked_folder_inside_an_input_folder_is_read(project: Project) -> None:
    project.write("shared/s.md", "one")
    (project.root / "content").mkdir()
    (project.root / "content" / "shared").symlink_to(project.root / "shared")
    (project.root / "content" / "loop").symlink_to(project.root / "content")  # must not walk forever
    project.config(
        """
        [[stage]]
        name = "cat"
        command = ["sh", "-c", "cat content/shared/s.md > out.txt"]
        inputs = ["content/"]
        outputs = ["out.txt"]
        """
    )
    build(project)
    project.write("shared/s.md", "two")
    proc = build(project)
    assert named(proc, "stage.started")[0]["reasons"] == ["input changed: content/shared/s.md"]
    assert project.read("out.txt") == "two"


def test_odd_file_names_build_and_stay_fresh(project: Project) -> None:
    folder = project.root / "content"
    folder.mkdir()
    for name in (b"bad\xff.md", b"new\nline.md", b"sep\xe2\x80\xa8x.md", b"per%25cent.md"):
        (folder / os.fsdecode(name)).write_bytes(b"x")
    project.config(
        """
        [[stage]]
        name = "all"
        command = ["sh", "-c", "ls content > out.txt"]
        inputs = ["content/"]
        outputs = ["out.txt"]
        """
    )
    first = build(project)
    assert first.returncode == 0, first.stderr
    second = build(project)
    assert named(second, "stage.started") == []
    assert named(second, "cache.entry_corrupt") == []
    assert chain_status(project)["all"] == "fresh"
    entry = project.entry("all").read_bytes().decode("utf-8")  # plain UTF-8, whatever the names
    assert "in=" in entry and "content/bad%FF.md" in entry and "content/per%2525cent.md" in entry


def chain_status(project: Project) -> dict[str, str]:
    proc = project.cli("status", "--json")
    assert proc.returncode == 0, proc.stderr
    return {row["name"]: row["state"] for row in json.loads(proc.stdout)["stages"]}


def test_a_cache_file_problem_fails_only_its_own_stage(project: Project) -> None:
    project.config(
        """
        [[stage]]
        name = "fast"
        command = ["sh", "-c", "echo > fast.txt"]
        outputs = ["fast.txt"]
        [[stage]]
        name = "other"
        command = ["sh", "-c", "echo > other.txt"]
        outputs = ["other.txt"]
        """
    )
    (project.root / "_build/.cache/fast.hash").mkdir(parents=True)  # an entry that cannot be replaced
    proc = build(project)
    assert proc.returncode == 1
    assert [e["stage"] for e in named(proc, "stage.failed")] == ["fast"]
    assert [e["stage"] for e in named(proc, "stage.succeeded")] == ["other"]


def test_cache_files_are_readable_by_others(chain: Project) -> None:
    build(chain)
    assert chain.entry("upper").stat().st_mode & 0o044 == 0o044


def test_a_deep_chain_of_stages_is_checked_without_recursion_limits(project: Project) -> None:
    stages = [f'[[stage]]\nname = "s{i}"\ncommand = ["true"]\nafter = ["s{i - 1}"]\n' for i in range(1, 1500)]
    project.config('[[stage]]\nname = "s0"\ncommand = ["true"]\n' + "".join(stages))
    proc = project.cli("check")
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "valid, 1500 stages" in proc.stdout


def test_explain_after_a_failed_run_still_says_what_changed(chain: Project) -> None:
    build(chain)
    chain.write("src/a.txt", "FAIL")
    build(chain)
    proc = chain.cli("explain", "upper")
    assert "its last run failed or was interrupted" in proc.stdout
    assert "input changed: src/a.txt" in proc.stdout
    assert "last successful run:" in proc.stdout


def test_status_columns_fit_long_durations(project: Project) -> None:
    project.config('[[stage]]\nname = "fetch"\ncommand = ["sh", "-c", "echo x > data.txt"]\n'
                   'outputs = ["data.txt"]\nttl = "60d"\n')  # fmt: skip
    assert project.cli("build").returncode == 0
    aged = time.time() - (26 * 86400 + 22 * 3600 + 58 * 60)
    entry = project.entry("fetch")
    finished = datetime.fromtimestamp(aged, UTC).isoformat(timespec="seconds")
    entry.write_text(re.sub(r"finished=.*", f"finished={finished}", entry.read_text()))
    os.utime(entry, (aged, aged))
    lines = project.cli("status").stdout.splitlines()
    header, row = lines[1], lines[2]
    assert "26d 22h 58m ago" in row and "33d 1h 2m" in row
    for column in ("STATE", "LAST SUCCESS", "TTL LEFT"):
        value = row[header.index(column) :].split("  ")[0]
        assert value.strip() and not row[header.index(column) - 1].strip(), (column, row)
