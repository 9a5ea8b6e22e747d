"""One stage run in a real subprocess: environment, output capture, failure, timeout, process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stagewatch.runner import RunResult, RunTicket, StageRunner
from stagewatch.stage import Stage
from tests.helpers.runner import write_module
from tests.helpers.waiting import eventually, pid_alive


def test_module_stage_runs_its_function_with_output_dir(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "hello",
        "import os, sys\n"
        "def run(out):\n"
        "    (out / 'hello.txt').write_text(f\"{out}|{os.environ['STAGEWATCH_STAGE']}|{os.getcwd()}\")\n"
        "    (out / 'mods.txt').write_text(str('stagewatch' in sys.modules))\n",
    )
    stage = Stage(name="hello", module="stages.hello", outputs=("hello.txt",))
    result = StageRunner(tmp_path).run(stage)
    assert result.ok, result
    assert (tmp_path / "hello.txt").read_text() == f"{tmp_path}|hello|{tmp_path}"
    # The stage's interpreter never imports stagewatch: it needs only the standard library.
    assert (tmp_path / "mods.txt").read_text() == "False"


def test_module_stage_calls_the_named_function(tmp_path: Path) -> None:
    write_module(tmp_path, "two", "def other(out):\n    (out / 'o.txt').write_text('other')\n")
    result = StageRunner(tmp_path).run(
        Stage(name="t", module="stages.two", function="other", outputs=("o.txt",))
    )
    assert result.ok
    assert (tmp_path / "o.txt").read_text() == "other"


def test_missing_function_is_a_clear_failure(tmp_path: Path) -> None:
    write_module(tmp_path, "nofn", "X = 1\n")
    result = StageRunner(tmp_path).run(Stage(name="t", module="stages.nofn"))
    assert not result.ok
    assert any("has no function 'run'" in line for line in result.output_tail)


def test_command_stage_runs_argv_without_a_shell(tmp_path: Path) -> None:
    stage = Stage(
        name="cmd",
        command=(
            sys.executable,
            "-c",
            "import sys; open('args.txt','w').write(repr(sys.argv[1:]))",
            "$HOME",
            "a b",
        ),
        outputs=("args.txt",),
    )
    assert StageRunner(tmp_path).run(stage).ok
    assert (tmp_path / "args.txt").read_text() == "['$HOME', 'a b']"


def test_failure_carries_exit_code_and_the_tail_of_stderr(tmp_path: Path) -> None:
    code = "import sys\nfor i in range(30): print('err', i, file=sys.stderr)\nprint('out')\nsys.exit(3)"
    result = StageRunner(tmp_path).run(Stage(name="bad", command=(sys.executable, "-c", code)))
    assert not result.ok
    assert result.exit_code == 3
    assert result.error == "exit 3"
    assert result.output_tail[-1] == "err 29"
    assert len(result.output_tail) == 20


def test_exception_in_module_stage_fails_with_its_traceback(tmp_path: Path) -> None:
    write_module(tmp_path, "boom", "def run(out):\n    raise RuntimeError('kaboom')\n")
    result = StageRunner(tmp_path).run(Stage(name="boom", module="stages.boom"))
    assert not result.ok and result.exit_code == 1
    assert result.output_tail[-1] == "RuntimeError: kaboom"


def test_exit_zero_without_declared_output_is_a_failure(tmp_path: Path) -> None:
    result = StageRunner(tmp_path).run(Stage(name="lazy", command=("true",), outputs=("never.txt", "dir/")))
    assert not result.ok
    assert result.error == "exit 0 but declared output missing: never.txt, dir/"


def test_output_is_kept_in_the_stage_log_and_streamed(tmp_path: Path) -> None:
    seen: list[tuple[str, str, str]] = []
    code = "import sys; print('to out'); print('to err', file=sys.stderr)"
    runner = StageRunner(tmp_path, on_line=lambda *line: seen.append(line))
    assert runner.run(Stage(name="talk", command=(sys.executable, "-c", code))).ok
    log = (tmp_path / "_build/.cache/talk.log").read_text().splitlines()
    assert sorted(log) == ["to err", "to out"]
    assert sorted(seen) == [("talk", "stderr", "to err"), ("talk", "stdout", "to out")]


def test_unstartable_command_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    result = StageRunner(tmp_path).run(Stage(name="nope", command=("no-such-program-xyz",)))
    assert not result.ok
    assert result.exit_code is None
    assert result.error == "could not start 'no-such-program-xyz': not found on PATH"


@pytest.mark.timeout(30)
def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    # The stage starts a grandchild that ignores nothing and would outlive a plain kill of the leader.
    script = "sleep 60 & echo $! > child.pid; wait"
    stage = Stage(name="slow", command=("sh", "-c", script), timeout_s=0.5)
    started = time.monotonic()
    result = StageRunner(tmp_path, grace_s=1.0).run(stage)
    assert result.timed_out and not result.ok
    assert result.error == "timed out after 0.5s"
    assert time.monotonic() - started < 10
    child = int((tmp_path / "child.pid").read_text())
    assert eventually(lambda: not pid_alive(child), 5)


@pytest.mark.timeout(30)
def test_timeout_escalates_to_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    # SIGTERM is ignored from the first instruction on (inherited through exec): no race with start-up.
    stage = Stage(name="stubborn", command=("sh", "-c", "trap '' TERM; exec sleep 60"), timeout_s=0.5)
    started = time.monotonic()
    result = StageRunner(tmp_path, grace_s=0.5).run(stage)
    assert result.timed_out
    assert result.exit_code == -9
    assert time.monotonic() - started < 10


@pytest.mark.timeout(30)
def test_leftover_background_processes_do_not_outlive_the_stage(tmp_path: Path) -> None:
    script = "sleep 60 > /dev/null 2>&1 & echo $! > child.pid"
    result = StageRunner(tmp_path, grace_s=1.0).run(Stage(name="bg", command=("sh", "-c", script)))
    child = int((tmp_path / "child.pid").read_text())
    assert eventually(lambda: not pid_alive(child), 5)
    # What had to be killed may have been writing an output: the run is not a success.
    assert not result.ok
    assert result.error == (
        f"exit 0, but a process it started was still running 1.0s after it ended and had to be killed:"
        f" pid {child} (sleep 60); a stage must wait for what it starts"
    )


def _start_stagewatch_running(tmp_path: Path, stage_literal: str) -> subprocess.Popen[bytes]:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from stagewatch.runner import StageRunner\n"
        "from stagewatch.stage import Stage\n"
        f"StageRunner(Path({str(tmp_path)!r})).run({stage_literal})\n"
    )
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "stage_literal",
    [
        "Stage(name='cmd', command=('sh', '-c', 'echo $$ > stage.pid; exec sleep 60'))",
        "Stage(name='mod', module='stages.sleepy')",
    ],
    ids=["command", "module"],
)
def test_stage_dies_with_a_sigkilled_stagewatch(tmp_path: Path, stage_literal: str) -> None:
    write_module(
        tmp_path,
        "sleepy",
        "import os, time\n"
        "def run(out):\n"
        "    (out / 'stage.pid').write_text(str(os.getpid()))\n"
        "    time.sleep(60)\n",
    )
    parent = _start_stagewatch_running(tmp_path, stage_literal)
    try:
        assert eventually(
            lambda: (tmp_path / "stage.pid").exists() and (tmp_path / "stage.pid").read_text().strip()
        )
        stage_pid = int((tmp_path / "stage.pid").read_text())
        assert pid_alive(stage_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert eventually(lambda: not pid_alive(stage_pid), 10), "the stage outlived its stagewatch"
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.timeout(30)
def test_cancel_stops_one_stage_and_says_so(tmp_path: Path) -> None:
    runner = StageRunner(tmp_path, grace_s=1.0)
    stage = Stage(name="long", command=("sh", "-c", "touch started; exec sleep 60"))
    results: list[RunResult] = []
    ticket = RunTicket()
    thread = threading.Thread(target=lambda: results.append(runner.run(stage, ticket)))
    thread.start()
    assert eventually(lambda: (tmp_path / "started").exists())
    assert runner.cancel_run(ticket) is True
    thread.join(10)
    assert results and results[0].cancelled and not results[0].ok
    assert runner.cancel_run(ticket) is False


def test_module_stage_imports_only_from_python_path(tmp_path: Path) -> None:
    # The key hashes src/pipeline/gen.py; the run must import that one, not ./pipeline/gen.py.
    for base, text in (("src", "from python_path"), (".", "from the current folder")):
        package = tmp_path / base / "pipeline"
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text("")
        (package / "gen.py").write_text(f"def run(out):\n    (out / 'who.txt').write_text({text!r})\n")
    stage = Stage(name="gen", module="pipeline.gen", python_path=("src",), outputs=("who.txt",))
    assert StageRunner(tmp_path).run(stage).ok
    assert (tmp_path / "who.txt").read_text() == "from python_path"


@pytest.mark.timeout(30)
def test_a_failing_output_sink_does_not_hang_the_stage(tmp_path: Path) -> None:
    def broken_sink(stage: str, stream: str, line: str) -> None:
        raise BrokenPipeError("the reader went away")

    code = "for i in range(20000): print('line', i)"
    result = StageRunner(tmp_path, on_line=broken_sink).run(
        Stage(name="chatty", command=(sys.executable, "-c", code))
    )
    assert result.ok
    assert (tmp_path / "_build/.cache/chatty.log").read_text().splitlines()[-1] == "line 19999"


def test_a_huge_line_is_shown_once_by_its_start_and_logged_whole(tmp_path: Path) -> None:
    seen: list[str] = []
    code = "import sys; sys.stdout.write('x' * 1_000_000)"
    runner = StageRunner(tmp_path, on_line=lambda _s, _t, line: seen.append(line))
    assert runner.run(Stage(name="wide", command=(sys.executable, "-c", code))).ok
    assert seen == ["x" * 4096 + " … (more in its log)"]
    assert (tmp_path / "_build/.cache/wide.log").read_text() == "x" * 1_000_000 + "\n"


def test_no_stage_starts_once_cancel_all_has_begun(tmp_path: Path) -> None:
    runner = StageRunner(tmp_path)
    runner.cancel_all()
    result = runner.run(Stage(name="late", command=("sh", "-c", "touch ran")))
    assert result.cancelled and not result.ok
    assert not (tmp_path / "ran").exists()


def test_a_module_named_like_the_standard_library_is_refused_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "statistics.py").write_text("def run(out):\n    (out / 'ran.txt').write_text('x')\n")
    result = StageRunner(tmp_path).run(Stage(name="stats", module="statistics", outputs=("ran.txt",)))
    assert not result.ok and result.exit_code is None
    assert result.error is not None and "standard library's statistics" in result.error
    assert not (tmp_path / "ran.txt").exists()


def test_a_stage_log_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    log_path = tmp_path / "_build/.cache/copy.log"
    log_path.parent.mkdir(parents=True)
    os.mkfifo(log_path)
    result = StageRunner(tmp_path).run(Stage(name="copy", command=("true",)))
    assert not result.ok
    assert result.error == f"could not write its log {log_path}: not a regular file (a FIFO)"


def test_no_log_is_made_under_an_output_folder_that_is_gone(tmp_path: Path) -> None:
    gone = tmp_path / "site"
    gone.mkdir()
    runner = StageRunner(gone)
    gone.rmdir()
    result = runner.run(Stage(name="copy", command=("true",)))
    assert not result.ok and "the output folder is gone" in (result.error or "")
    assert not gone.exists()


def test_a_ticket_cancelled_before_its_run_starts_keeps_it_from_starting(tmp_path: Path) -> None:
    from stagewatch.runner import RunTicket

    runner = StageRunner(tmp_path)
    ticket = RunTicket()
    runner.cancel_run(ticket)
    result = runner.run(Stage(name="touch", command=("touch", "ran.txt")), ticket)
    assert result.cancelled and not (tmp_path / "ran.txt").exists()
    # A ticket reaches its own run only: the next run of the stage goes ahead.
    assert runner.run(Stage(name="touch", command=("touch", "ran.txt"), outputs=("ran.txt",))).ok
