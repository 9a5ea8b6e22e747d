"""Hostile files (FIFOs, devices, huge or damaged cache files): one clear line, never a hang."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from stagewatch.stage import StageState
from stagewatch.state import Attempt, PipelineState, read_state, write_state
from stagewatch.status_report import ago as _ago
from tests.helpers.daemon import SYNC_STAGE, RunningDaemon
from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(60)


def stagewatch(config: Path | str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI on a given pipeline file; a hang fails the test at the timeout."""
    return subprocess.run(
        [sys.executable, "-m", "stagewatch", "--config", str(config), "--log-format", "json", *args],
        cwd=cwd, capture_output=True, text=True, timeout=20,
    )  # fmt: skip


def one_line_refusal(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- the pipeline file -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "build", "status", "watch"])
def test_a_fifo_as_the_pipeline_file_is_refused_without_waiting(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "stagewatch.toml"
    os.mkfifo(fifo)
    line = one_line_refusal(stagewatch(fifo, command, cwd=tmp_path))
    assert line == f"{fifo}: not a regular file (a FIFO)"


def test_a_device_as_the_pipeline_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    line = one_line_refusal(stagewatch("/dev/zero", "check", cwd=tmp_path))
    assert line == "/dev/zero: not a regular file (a character device)"


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "stagewatch.toml"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    try:
        yield path
    finally:
        server.close()


def test_a_socket_as_the_pipeline_file_is_refused(tmp_path: Path, unix_socket: Path) -> None:
    line = one_line_refusal(stagewatch(unix_socket, "check", cwd=tmp_path))
    assert line == f"{unix_socket}: not a regular file (a socket)"


def test_a_huge_pipeline_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "stagewatch.toml"
    with open(path, "wb") as handle:
        handle.truncate(11 * 1024 * 1024)  # sparse: no disk used, still 11 MiB to read
    line = one_line_refusal(stagewatch(path, "check", cwd=tmp_path))
    assert line == f"{path}: 11.0 MiB is too large for a pipeline file (at most 10 MiB)"


def test_a_symlink_to_a_regular_pipeline_file_is_read(project: Project) -> None:
    project.write("real.toml", '[[stage]]\nname = "a"\ncommand = ["true"]\n')
    (project.root / "stagewatch.toml").symlink_to("real.toml")
    proc = project.cli("check")
    assert proc.returncode == 0, proc.stderr
    assert "valid, 1 stage" in proc.stdout


# --- damaged cache files -----------------------------------------------------------------------

COPY = """
[[stage]]
name = "copy"
command = ["sh", "-c", "cat in.txt > out.txt; echo copy >> runs.log"]
inputs = ["in.txt"]
outputs = ["out.txt"]
"""

HEX = "0123456789abcdef" * 4


@pytest.fixture
def copy(project: Project) -> Project:
    project.write("in.txt", "hello\n")
    project.config(COPY)
    return project


def cache(project: Project, name: str) -> Path:
    return project.root / "_build" / ".cache" / name


def log_events(text: str) -> list[dict[str, Any]]:
    """The JSON log lines in a stream (other lines, such as a table, are skipped)."""
    found = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and "event" in event:
                found.append(event)
    return found


def no_traceback(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def ran(project: Project) -> int:
    log = project.root / "runs.log"
    count = len(log.read_text().split()) if log.exists() else 0
    log.unlink(missing_ok=True)
    return count


def good_digest_rows(db: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT path, size, mtime_ns, ino, ctime_ns, hashed_at_ns, digest FROM digests")
        return list(rows.fetchall())


def make_bad_rows(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DELETE FROM digests")
        conn.executemany(
            "INSERT INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (b"/nowhere/a", None, None, None, None, None, None),
                (b"/nowhere/b", "big", "soon", "x", "y", "z", HEX),
                (b"/nowhere/c", 1, 2, 3, 4, 5, "abc"),
                (7, 1, 2, 3, 4, 5, HEX),
            ],
        )


def make_foreign_table(db: Path) -> None:
    db.unlink()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE digests (name TEXT, value INTEGER)")
        conn.execute("INSERT INTO digests VALUES ('x', 1)")


def make_foreign_imports_table(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DROP TABLE IF EXISTS imports_v1")
        conn.execute("CREATE TABLE imports_v1 (name TEXT, value INTEGER)")


def make_not_sqlite(db: Path) -> None:
    db.write_bytes(b"SQLite format 2\0" + b"\xff" * 4000)


def make_empty(db: Path) -> None:
    db.write_bytes(b"")


DIGEST_DAMAGE = {
    "bad rows": make_bad_rows,
    "foreign table": make_foreign_table,
    "foreign imports table": make_foreign_imports_table,
    "not sqlite": make_not_sqlite,
    "zero bytes": make_empty,
}


@pytest.mark.parametrize("damage", DIGEST_DAMAGE.values(), ids=DIGEST_DAMAGE.keys())
def test_a_damaged_digest_cache_is_rebuilt_with_a_warning(
    copy: Project, damage: Callable[[Path], None]
) -> None:
    assert no_traceback(copy.cli("build")).returncode == 0
    db = cache(copy, "digests.sqlite")
    damage(db)
    proc = no_traceback(copy.cli("status"))
    assert proc.returncode == 0
    warnings = [e["path"] for e in log_events(proc.stderr) if e["event"] == "digests.unreadable"]
    assert warnings == ([] if damage is make_empty else [str(db)])
    copy.write("in.txt", "changed\n")
    ran(copy)
    for command in (("explain", "copy"), ("build", "--dry-run"), ("build",), ("build",)):
        proc = no_traceback(copy.cli(*command))
        assert proc.returncode == 0, proc.stderr
        assert "digests." not in proc.stdout + proc.stderr  # healed: said once, never again
    assert ran(copy) == 1
    rows = good_digest_rows(db)
    assert rows and all(isinstance(row[0], bytes) and len(row[6]) == 64 for row in rows)


def test_a_digest_cache_that_is_a_fifo_is_replaced_not_opened(copy: Project) -> None:
    assert no_traceback(copy.cli("build")).returncode == 0
    db = cache(copy, "digests.sqlite")
    db.unlink()
    os.mkfifo(db)
    proc = no_traceback(copy.cli("status"))
    assert proc.returncode == 0
    assert [e["path"] for e in log_events(proc.stderr) if e["event"] == "digests.unreadable"] == [str(db)]
    assert no_traceback(copy.cli("build")).returncode == 0
    assert good_digest_rows(db)


@pytest.mark.parametrize("finished", ["2024-05-01T10:00:00", "yesterday"])
def test_an_entry_finished_time_without_zone_or_garbage_is_shown(copy: Project, finished: str) -> None:
    assert no_traceback(copy.cli("build")).returncode == 0
    entry = copy.entry("copy")
    lines = [
        f"finished={finished}" if line.startswith("finished=") else line
        for line in entry.read_text().splitlines()
    ]
    entry.write_text("\n".join(lines) + "\n")
    status = no_traceback(copy.cli("status"))
    assert status.returncode == 0
    assert status.stdout.splitlines()[2].split()[:2] == ["copy", "fresh"]
    explain = no_traceback(copy.cli("explain", "copy"))
    assert explain.returncode == 0
    assert f"  last successful run: {finished}, took" in explain.stdout


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("finished", "shown"),
    [
        ("2024-05-01T10:00:00+00:00", "2h ago"),
        ("2024-05-01T10:00:00", "2h ago"),  # no zone: UTC, as stagewatch writes them
        ("2024-05-01T12:00:00+02:00", "2h ago"),
        ("yesterday", "yesterday"),
        ("2024-05-01T14:00:00+00:00", "in the future"),  # the clock stepped back since
        ("a long garbage value", "?"),
        ("bell\x07", "?"),
        ("", "-"),
    ],
)
def test_a_recorded_time_is_shown_as_an_age_or_as_it_is(finished: str, shown: str) -> None:
    assert _ago(finished, NOW) == shown


STATE_DAMAGE: dict[str, bytes] = {
    "a list": b"[1, 2, 3]\n",
    "stages a number": b'{"stages": 5}\n',
    "unknown result": b'{"stages": {"copy": {"result": "bogus", "started": "2024-01-01T00:00:00+00:00"}}}\n',
    "not UTF-8": b'{"stages": {"\xff\xfe": 1}}\n',
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("text", STATE_DAMAGE.values(), ids=STATE_DAMAGE.keys())
def test_a_damaged_state_file_reads_as_nothing_recorded_and_is_rewritten(copy: Project, text: bytes) -> None:
    assert no_traceback(copy.cli("build")).returncode == 0
    state = cache(copy, "state.json")
    state.write_bytes(text)
    status = no_traceback(copy.cli("status", "--json"))
    assert status.returncode == 0
    assert json.loads(status.stdout)["stages"][0]["last_attempt"] is None
    warnings = [e for e in log_events(status.stderr) if e["event"] == "state.unreadable"]
    assert [w["path"] for w in warnings] == [str(state)]
    copy.write("in.txt", "changed\n")
    build = no_traceback(copy.cli("build"))
    assert build.returncode == 0
    assert len([e for e in log_events(build.stdout) if e["event"] == "state.unreadable"]) == 1
    recorded = json.loads(state.read_text())
    assert recorded["stages"]["copy"]["result"] == "succeeded"
    status = no_traceback(copy.cli("status"))
    assert "state.unreadable" not in status.stderr


@pytest.mark.parametrize("text", STATE_DAMAGE.values(), ids=STATE_DAMAGE.keys())
def test_a_damaged_state_file_is_rewritten_by_a_build_that_runs_nothing(copy: Project, text: bytes) -> None:
    assert no_traceback(copy.cli("build")).returncode == 0
    state = cache(copy, "state.json")
    state.write_bytes(text)
    build = no_traceback(copy.cli("build"))
    assert build.returncode == 0
    assert len([e for e in log_events(build.stdout) if e["event"] == "state.unreadable"]) == 1
    status = no_traceback(copy.cli("status"))
    assert "state.unreadable" not in status.stderr  # said once, not at every command from now on


RECORD_DAMAGE: dict[str, object] = {
    "a list": ["failed"],
    "no result": {"started": "2024-01-01T00:00:00+00:00"},
    "no start": {"result": "failed"},
    "a number for a time": {"result": "failed", "started": 5},
    "text for a duration": {"result": "failed", "started": "t", "duration_s": "slow"},
    "a boolean exit code": {"result": "failed", "started": "t", "exit_code": True},
    "a tail not of lines": {"result": "failed", "started": "t", "tail": 7},
    "a tail of numbers": {"result": "failed", "started": "t", "tail": [1, 2]},
}


@pytest.mark.parametrize("record", RECORD_DAMAGE.values(), ids=RECORD_DAMAGE.keys())
def test_a_malformed_record_is_left_out_with_one_warning(tmp_path: Path, record: object) -> None:
    good = {"result": "succeeded", "started": "t", "finished": "u", "duration_s": 1, "future_field": 1}
    data = {"pid": "me", "stages": {"bad": record, "good": good}, "failures": {"bad": record}}
    write_state_text(tmp_path, json.dumps(data))
    with capture_logs() as logs:
        state = read_state(tmp_path)
    assert list(state.stages) == ["good"]
    assert state.stages["good"] == Attempt(StageState.SUCCEEDED, "t", "u", 1)
    assert (state.failures, state.pid) == ({}, None)
    assert [log["event"] for log in logs] == ["state.unreadable"]
    assert 'stages "bad"' in logs[0]["problem"] and 'failures "bad"' in logs[0]["problem"]


def write_state_text(output_dir: Path, text: str) -> None:
    path = output_dir / "_build" / ".cache" / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_good_state_file_reads_back_without_a_warning(tmp_path: Path) -> None:
    attempt = Attempt(StageState.FAILED, "s", "f", 1.5, 3, "exit 3", ("a", "b"))
    write_state(tmp_path, PipelineState(7, "watch", {"x": attempt}, {"x": attempt}))
    with capture_logs() as logs:
        assert read_state(tmp_path) == PipelineState(7, "watch", {"x": attempt}, {"x": attempt})
    assert logs == []


def test_a_state_file_keeps_its_good_records_and_drops_the_bad(copy: Project) -> None:
    copy.config(COPY + '\n[[stage]]\nname = "other"\ncommand = ["true"]\ninputs = ["in.txt"]\n')
    state = cache(copy, "state.json")
    state.parent.mkdir(parents=True)
    good = {"result": "failed", "started": "2024-01-01T00:00:00+00:00", "error": "exit 3", "tail": ["boom"]}
    state.write_text(
        json.dumps({"stages": {"copy": good, "other": {"result": "bogus"}}, "failures": {"copy": good}})
    )
    proc = no_traceback(copy.cli("status", "--json"))
    assert proc.returncode == 0
    rows = {row["name"]: row for row in json.loads(proc.stdout)["stages"]}
    assert rows["copy"]["last_attempt"]["error"] == "exit 3"
    assert rows["copy"]["last_failure"]["tail"] == ["boom"]
    assert rows["other"]["last_attempt"] is None
    warnings = [e for e in log_events(proc.stderr) if e["event"] == "state.unreadable"]
    assert len(warnings) == 1 and "other" in warnings[0]["problem"]


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_state_file_that_is_not_a_file_is_not_waited_on(copy: Project, kind: str) -> None:
    assert no_traceback(copy.cli("build")).returncode == 0
    state = cache(copy, "state.json")
    state.unlink()
    if kind == "fifo":
        os.mkfifo(state)
    else:
        state.mkdir()
    proc = no_traceback(copy.cli("status", "--json"))
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["stages"][0]["state"] == "fresh"
    assert [e["path"] for e in log_events(proc.stderr) if e["event"] == "state.unreadable"] == [str(state)]


def test_an_entry_that_is_a_fifo_is_stale_not_waited_on(copy: Project) -> None:
    assert no_traceback(copy.cli("build")).returncode == 0
    entry = copy.entry("copy")
    entry.unlink()
    os.mkfifo(entry)
    proc = no_traceback(copy.cli("status", "--json"))
    assert proc.returncode == 0
    row = json.loads(proc.stdout)["stages"][0]
    assert row["state"] == "stale"
    assert row["reasons"] == ["cache entry unreadable: not a regular file (a FIFO)"]
    assert no_traceback(copy.cli("explain", "copy")).returncode == 0


# --- inputs that cannot be read, said as such --------------------------------------------------


def _proc_mem_is_unreadable() -> bool:
    try:
        with open("/proc/self/mem", "rb") as handle:
            handle.read(1)
    except OSError as exc:
        return exc.strerror == "Input/output error"
    return False


def make_fifo(project: Project) -> str:
    os.mkfifo(project.root / "in.dat")
    return "in.dat"


def make_socket(project: Project) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(project.root / "in.dat"))  # the socket file stays after close
    return "in.dat"


def make_broken_link(project: Project) -> str:
    (project.root / "in.dat").symlink_to(project.root / "gone.dat")
    return "in.dat"


def make_nothing(project: Project) -> str:
    return "in.dat"


def make_file_for_folder(project: Project) -> str:
    project.write("in", "a file where a folder is declared")
    return "in/"


def name_unreadable(project: Project) -> str:
    if not _proc_mem_is_unreadable():
        pytest.skip("/proc/self/mem is readable here")
    return "/proc/self/mem"  # a regular file that even root cannot read from its start


INPUT_TROUBLE = {
    "fifo": (make_fifo, "declared file is not a regular file (a FIFO): in.dat"),
    "socket": (make_socket, "declared file is not a regular file (a socket): in.dat"),
    "broken symlink": (make_broken_link, "declared file missing: in.dat (a broken symlink)"),
    "missing": (make_nothing, "declared file missing: in.dat"),
    "file for a folder": (make_file_for_folder, "declared folder is not a folder (a regular file): in/"),
    "unreadable": (name_unreadable, "declared file unreadable (Input/output error): /proc/self/mem"),
}


@pytest.mark.parametrize(("make", "why"), INPUT_TROUBLE.values(), ids=INPUT_TROUBLE.keys())
def test_an_input_that_cannot_be_read_is_said_as_such(
    project: Project, make: Callable[[Project], str], why: str
) -> None:
    pattern = make(project)
    project.config(
        f"""
        [[stage]]
        name = "lenient"
        command = ["sh", "-c", "echo ran >> runs.log; echo made > out.txt"]
        inputs = ["{pattern}"]
        outputs = ["out.txt"]
        """
    )
    dry_run = no_traceback(project.cli("build", "--dry-run"))
    assert f"run    lenient  {why}; no successful run recorded" in dry_run.stdout
    explain = no_traceback(project.cli("explain", "lenient"))
    assert f"    - {why}\n" in explain.stdout
    assert f"  current key:  (none: {why})\n" in explain.stdout
    proc = no_traceback(project.cli("build"))
    assert proc.returncode == 1
    events = log_events(proc.stdout)
    assert [e["reasons"][0] for e in events if e["event"] == "stage.started"] == [why]
    assert [e["error"] for e in events if e["event"] == "stage.failed"] == [f"exit 0 but {why}"]
    assert ran(project) == 1
    assert not project.entry("lenient").exists()
    status = json.loads(no_traceback(project.cli("status", "--json")).stdout)
    assert why in status["stages"][0]["reasons"]


def unprivileged() -> tuple[str, ...]:
    """A command that runs another without the power to read what its mode forbids: root reads
    a folder of mode 000 anyway, so root gives up CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root, and setpriv (util-linux) is missing to give up reading all")
    return ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


@pytest.fixture
def locked_folder(project: Project) -> Iterator[Path]:
    """content/private/ holds a page, and nobody may list it."""
    project.write("content/a.md", "A")
    project.write("content/private/b.md", "B")
    folder = project.root / "content" / "private"
    folder.chmod(0)
    yield folder
    folder.chmod(0o755)  # so that tmp_path can be removed


@pytest.mark.parametrize("pattern", ["content/**/*.md", "content/", "content/*/b.md"])
def test_an_unreadable_folder_inside_an_input_fails_the_stage_naming_it(
    project: Project, locked_folder: Path, pattern: str
) -> None:
    project.config(
        f"""
        [[stage]]
        name = "site"
        command = ["sh", "-c", "echo ran >> runs.log; echo made > out.txt"]
        inputs = ["{pattern}"]
        outputs = ["out.txt"]
        """
    )
    why = "input folder unreadable (Permission denied): content/private"
    as_user = unprivileged()
    dry_run = no_traceback(project.cli("build", "--dry-run", wrap=as_user))
    assert f"run    site  {why}; no successful run recorded" in dry_run.stdout
    proc = no_traceback(project.cli("build", wrap=as_user))
    assert proc.returncode == 1
    assert [e["error"] for e in log_events(proc.stdout) if e["event"] == "stage.failed"] == [
        f"exit 0 but {why}"
    ]
    assert not project.entry("site").exists()
    status = json.loads(no_traceback(project.cli("status", "--json", wrap=as_user)).stdout)
    assert status["stages"][0]["state"] != "fresh"
    assert why in status["stages"][0]["reasons"]


def test_an_unreadable_folder_a_glob_cannot_reach_is_no_problem(
    project: Project, locked_folder: Path
) -> None:
    project.config(
        """
        [[stage]]
        name = "site"
        command = ["sh", "-c", "echo made > out.txt"]
        inputs = ["content/*.md"]
        outputs = ["out.txt"]
        """
    )
    as_user = unprivileged()
    assert no_traceback(project.cli("build", wrap=as_user)).returncode == 0
    status = json.loads(no_traceback(project.cli("status", "--json", wrap=as_user)).stdout)
    assert status["stages"][0]["state"] == "fresh"


# --- the cache folder is not a folder ----------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("build",),
        ("build", "--dry-run"),
        ("status",),
        ("status", "--json"),
        ("explain", "copy"),
        ("accept", "copy"),
        ("invalidate", "copy"),
        ("watch",),
    ],
    ids=" ".join,
)
@pytest.mark.parametrize("blocker", ["_build/.cache", "_build"])
def test_a_cache_folder_that_is_a_file_is_said_in_one_line(
    copy: Project, command: tuple[str, ...], blocker: str
) -> None:
    (copy.root / "out.txt").write_text("hello\n")
    copy.write(blocker, "someone ran touch")
    proc = no_traceback(copy.cli(*command))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1:] == [
        f"stagewatch: {copy.root / blocker} is a file, not a folder; remove it"
    ]
    assert (copy.root / blocker).read_text() == "someone ran touch"


# --- a write that fails names its file ---------------------------------------------------------

TWO = (
    COPY
    + """
[[stage]]
name = "again"
command = ["sh", "-c", "cat in.txt > again.txt"]
inputs = ["in.txt"]
outputs = ["again.txt"]
"""
)


def test_accept_names_the_entry_it_could_not_write_and_goes_on(copy: Project) -> None:
    copy.config(TWO)
    assert no_traceback(copy.cli("build")).returncode == 0
    copy.write("in.txt", "a cosmetic edit\n")
    copy.entry("copy").unlink()
    copy.entry("copy").mkdir()  # a real EISDIR from the rename onto it
    proc = no_traceback(copy.cli("accept", "copy", "again"))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"copy: not accepted: could not write {copy.entry('copy')}: Is a directory"
    ]
    assert proc.stdout.splitlines() == ["again: accepted (current inputs recorded as built)"]
    assert not list(copy.entry("copy").parent.glob(".*.tmp"))


def test_an_entry_that_cannot_be_written_is_named_in_the_failure(copy: Project) -> None:
    copy.entry("copy").mkdir(parents=True)
    proc = no_traceback(copy.cli("build"))
    assert proc.returncode == 1
    failed = [e for e in log_events(proc.stdout) if e["event"] == "stage.failed"]
    assert [e["error"] for e in failed] == [
        f"ran, but its cache entry {copy.entry('copy')} could not be written: Is a directory"
    ]


def with_file_size_limit(project: Project, limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with RLIMIT_FSIZE set: writes past `limit` bytes fail with EFBIG, as on a full disk.
    (Python ignores SIGXFSZ, so the write fails instead of killing the process.)"""
    limited = (
        "import os, resource, sys;"
        f" resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}));"
        " os.execv(sys.executable, [sys.executable, '-m', 'stagewatch', *sys.argv[1:]])"
    )
    return subprocess.run(
        [sys.executable, "-c", limited, "--config", str(project.root / "stagewatch.toml"),
         "--log-format", "json", *args],
        cwd=project.root, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_a_full_disk_names_every_file_it_could_not_write(copy: Project) -> None:
    assert no_traceback(copy.cli("build")).returncode == 0
    copy.write("in.txt", "changed\n")
    ran(copy)
    proc = no_traceback(with_file_size_limit(copy, 120, "build"))
    assert proc.returncode == 1
    events = log_events(proc.stdout)
    failed = [e["error"] for e in events if e["event"] == "stage.failed"]
    assert failed == [
        f"its cache entry {copy.entry('copy')} could not be replaced before the run: File too large"
    ]
    assert ran(copy) == 0
    unwritable = {
        e["event"]: e["path"] for e in events if e["event"] in ("state.unwritable", "digests.write_failed")
    }
    assert unwritable == {
        "state.unwritable": str(cache(copy, "state.json")),
        "digests.write_failed": str(cache(copy, "digests.sqlite")),
    }
    proc = no_traceback(copy.cli("build"))  # room again: all is well
    assert proc.returncode == 0
    assert ran(copy) == 1


def test_a_folder_made_readable_again_is_read_by_the_next_rescan(
    project: Project, locked_folder: Path
) -> None:
    project.config(
        SYNC_STAGE
        + """
        [pipeline]
        rescan = "1s"  # a chmod is no event the daemon asks for: the reconciliation reads it

        [[stage]]
        name = "site"
        command = ["sh", "-c", "cat content/*/*.md > out.txt 2>/dev/null || true"]
        inputs = ["content/**/*.md"]
        outputs = ["out.txt"]
        """
    )
    project.write("sync/token", "0")
    config = str(project.root / "stagewatch.toml")
    argv = [
        *unprivileged(),
        sys.executable,
        "-m",
        "stagewatch",
        "--config",
        config,
        "--log-format",
        "json",
        "watch",
    ]
    with RunningDaemon(project, argv=argv) as daemon:
        failed = daemon.wait_event("stage.failed", stage="site")
        assert (
            "input folder unreadable (Permission denied): content/private" in daemon.events[failed]["error"]
        )
        since = daemon.ready()
        locked_folder.chmod(0o755)
        daemon.wait_event("stage.succeeded", since, stage="site")
        assert project.read("out.txt") == "B"
        assert daemon.stop() == 0
