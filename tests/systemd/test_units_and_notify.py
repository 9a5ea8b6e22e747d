"""sd_notify to a real AF_UNIX datagram socket, JSON logs under journald, and the unit files."""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from stagewatch.daemon.systemd import Notifier, notify_address, watchdog_interval_s
from tests.helpers.daemon import SYNC_STAGE, RunningDaemon
from tests.helpers.paths import REPO
from tests.helpers.project import Project
from tests.helpers.systemd import NotifySocket


@pytest.fixture
def notify_path(tmp_path: Path) -> Iterator[tuple[str, NotifySocket]]:
    path = str(tmp_path / "notify.sock")
    receiver = NotifySocket(path)
    yield path, receiver
    receiver.close()


@pytest.fixture
def pipeline(project: Project) -> Project:
    project.config(
        """
        [[stage]]
        name = "copy"
        command = ["sh", "-c", "env > stage-env.txt; ! grep -q FAIL in.txt && cp in.txt out.txt"]
        inputs = ["in.txt"]
        outputs = ["out.txt"]
        """
        + SYNC_STAGE
    )
    project.write("in.txt", "one")
    project.write("sync/token", "0")
    return project


def test_notify_address_forms() -> None:
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@stagewatch-test") == "\0stagewatch-test"
    assert notify_address("") is None
    assert notify_address(None) is None
    assert notify_address("relative/path") is None


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "400000"}, 42) == 0.2
    assert watchdog_interval_s({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "42"}, 42) == 0.2
    assert watchdog_interval_s({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval_s({}, 42) is None


def test_no_socket_means_no_messages_and_no_error() -> None:
    notifier = Notifier({})
    notifier.ready()
    notifier.status("idle")
    notifier.stopping()
    assert not notifier.enabled


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with capture_logs() as logs:
        notifier.ready()  # nobody listens: logged once, never raised
        notifier.ready()
    notifier.close()
    assert [log["event"] for log in logs] == ["systemd.notify_failed"]


@pytest.mark.timeout(90)
def test_the_daemon_speaks_sd_notify(pipeline: Project, notify_path: tuple[str, NotifySocket]) -> None:
    path, received = notify_path
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    with RunningDaemon(pipeline, env=env) as daemon:
        lines = received.receive_until(lambda got: "READY=1" in got)
        first_ready = lines.index("READY=1")
        received.receive_until(lambda got: "STATUS=idle, 2 stages fresh" in got)
        statuses = [line for line in received.lines() if line.startswith("STATUS=")]
        assert any(s.startswith("STATUS=catching up ") or s.startswith("STATUS=running ") for s in statuses)
        # At least two watchdog pings within one second (every half of WATCHDOG_USEC).
        start = time.monotonic()
        received.receive_until(
            lambda got: sum(1 for t, line in received.messages if line == "WATCHDOG=1" and t >= start) >= 2,
            timeout=1.0,
        )
        daemon.wait_event("watch.idle")
        daemon.proc.send_signal(signal.SIGHUP)
        received.receive_until(lambda got: "RELOADING=1" in got)
        reload_at = received.lines().index("RELOADING=1")
        assert received.lines()[reload_at + 1].startswith("MONOTONIC_USEC=")
        received.receive_until(lambda got: got[reload_at:].count("READY=1") >= 1)
        assert daemon.stop() == 0
        received.receive_until(lambda got: "STOPPING=1" in got)
    assert first_ready < reload_at
    # The stages never see systemd's variables: their messages would be taken for ours.
    stage_env = pipeline.read("stage-env.txt")
    assert "NOTIFY_SOCKET" not in stage_env and "WATCHDOG_USEC" not in stage_env


@pytest.mark.timeout(90)
def test_an_abstract_notify_socket_works(pipeline: Project) -> None:
    name = f"stagewatch-test-{os.getpid()}-{time.monotonic_ns()}"
    received = NotifySocket("\0" + name)
    try:
        with RunningDaemon(pipeline, env={"NOTIFY_SOCKET": "@" + name}) as daemon:
            received.receive_until(lambda got: "READY=1" in got)
            assert daemon.stop() == 0
            received.receive_until(lambda got: "STOPPING=1" in got)
    finally:
        received.close()


@pytest.mark.timeout(90)
def test_status_says_which_stage_is_failing(pipeline: Project, notify_path: tuple[str, NotifySocket]) -> None:
    path, received = notify_path
    pipeline.write("in.txt", "FAIL")
    with RunningDaemon(pipeline, env={"NOTIFY_SOCKET": path}) as daemon:
        received.receive_until(lambda got: "STATUS=1 stage failing: copy" in got)
        daemon.stop()


def _run_on_a_terminal(project: Project, env: dict[str, str]) -> str:
    """Run `stagewatch build` with its stdout on a real pseudo-terminal; what it printed."""
    leader, follower = pty.openpty()
    full_env = {key: value for key, value in os.environ.items() if key != "JOURNAL_STREAM"}
    full_env.update(env)
    config = str(project.root / "stagewatch.toml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stagewatch", "--config", config, "build", "copy"],
        stdout=follower, stderr=subprocess.DEVNULL, env=full_env, cwd=project.root,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_auto_log_format_is_json_under_journald_even_on_a_terminal(pipeline: Project) -> None:
    printed = _run_on_a_terminal(pipeline, {"JOURNAL_STREAM": "8:12345"})
    lines = [line for line in printed.splitlines() if line.strip()]
    assert lines and all(line.startswith("{") and '"event"' in line for line in lines), printed


def test_auto_log_format_is_console_on_a_terminal(pipeline: Project) -> None:
    printed = _run_on_a_terminal(pipeline, {})
    assert "checking 1 stage (2 at once)" in printed and "\x1b[" in printed  # colored
    assert not printed.lstrip().startswith("{")


def _run_into_journald(project: Project, *args: str, matching: bool = True) -> tuple[int, list[str]]:
    """Run stagewatch with stdout and stderr on one stream socket, as journald's stream is under
    systemd; $JOURNAL_STREAM names that socket (or, with matching=False, some other file)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    info = os.fstat(theirs.fileno())
    stream = f"{info.st_dev}:{info.st_ino}" if matching else f"{info.st_dev}:{info.st_ino + 1}"
    env = {key: value for key, value in os.environ.items() if key != "STAGEWATCH_CONFIG"}
    env["JOURNAL_STREAM"] = stream
    with ours, theirs:
        proc = subprocess.run(
            [sys.executable, "-m", "stagewatch", "--config", str(project.root / "stagewatch.toml"), *args],
            stdout=theirs, stderr=theirs, env=env, cwd=project.root, timeout=30,
        )  # fmt: skip
        theirs.close()
        received = b""
        while chunk := ours.recv(65536):
            received += chunk
    return proc.returncode, received.decode().splitlines()


def test_under_journald_each_json_line_starts_with_its_syslog_priority(pipeline: Project) -> None:
    pipeline.write("in.txt", "FAIL")
    code, lines = _run_into_journald(pipeline, "build")
    assert code == 1
    assert lines and all(line[:3] in ("<6>", "<4>", "<3>") and line[3] == "{" for line in lines), lines
    priorities = {json.loads(line[3:])["event"]: line[:3] for line in lines}
    assert priorities["stage.started"] == "<6>" and priorities["stage.failed"] == "<3>", priorities


def test_an_invalid_pipeline_file_at_start_under_journald_is_one_json_error(project: Project) -> None:
    path = project.config('[[stage]]\nname = "a"\ncommand = ["true"]\ninput = ["x"]\n')
    code, lines = _run_into_journald(project, "watch")
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("<3>{"), lines
    said = json.loads(lines[0][3:])
    assert said["event"] == "config.invalid" and said["level"] == "error"
    assert said["problems"] == [f'{path}: stage "a": unknown key "input" (did you mean "inputs"?)']


def test_a_start_up_error_in_a_json_log_joined_by_stderr_is_json(project: Project) -> None:
    project.config('[[stage]]\nname = "a"\ncommand = ["true"]\nttl = "soon"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "stagewatch", "--config", str(project.root / "stagewatch.toml"),
         "--log-format", "json", "watch"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=project.root, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, lines
    said = json.loads(lines[0])
    assert said["event"] == "config.invalid" and said["level"] == "error" and "ttl" in said["problems"][0]


def test_a_journal_stream_that_is_not_stdout_adds_no_priority_prefix(project: Project) -> None:
    # Inherited from a service by something whose output goes elsewhere: no "<6>" in its lines.
    project.config('[[stage]]\nname = "a"\ncommand = ["true"]\n')
    code, lines = _run_into_journald(project, "build", matching=False)
    assert code == 0
    assert lines and all(line.startswith("{") for line in lines), lines


def test_stage_output_lines_carry_the_stage_name(pipeline: Project) -> None:
    pipeline.config('[[stage]]\nname = "talk"\ncommand = ["sh", "-c", "echo hello from the stage"]\n')
    proc = pipeline.cli("build")
    assert '"stage": "talk"' in proc.stdout and '"line": "hello from the stage"' in proc.stdout


UNITS = ["stagewatch.service", "stagewatch@.service"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", UNITS)
def test_unit_files_pass_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    # verify checks that ExecStart= exists: point it at this checkout's stagewatch.
    stagewatch = Path(sys.executable).with_name("stagewatch")
    text = (REPO / "systemd" / unit).read_text().replace("/opt/stagewatch/bin/stagewatch", str(stagewatch))
    name = unit.replace("@.", "@example.")
    target = tmp_path / name
    target.write_text(text)
    if "@" in unit:
        (tmp_path / unit).write_text(text)
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(target)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in proc.stderr.splitlines() if str(tmp_path) in line or name in line]
    assert proc.returncode == 0 and not problems, proc.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_unit_files_are_hardened_notify_services(unit: str) -> None:
    text = (REPO / "systemd" / unit).read_text()
    for setting in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "WatchdogSec=",
        "TimeoutStopSec=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ):
        assert setting in text, setting
    assert "User=stagewatch" in text or "DynamicUser=yes" in text


@pytest.mark.timeout(10)
def test_a_receiver_that_does_not_read_never_blocks_the_sender(notify_path: tuple[str, NotifySocket]) -> None:
    path, _receiver = notify_path  # bound, never read: its queue fills after a few datagrams
    notifier = Notifier({"NOTIFY_SOCKET": path})
    began = time.monotonic()
    with capture_logs() as logs:
        for _ in range(100):
            notifier.alive()
    assert time.monotonic() - began < 2.0
    assert [entry["event"] for entry in logs] == ["systemd.notify_dropped"]
    notifier.close()
