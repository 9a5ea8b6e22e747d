"""The build host of docs/operations.md under a real systemd: installed by the guide's own
commands, then every promise the guide makes about the service, checked on what systemd
and the journal say. Boots a sandboxed systemd (tests/sandbox/systemd-sandbox): needs root
and a cgroup2 hierarchy that no systemd runs, and is skipped, saying why, elsewhere."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.systemd_host import Host, booted_sandbox, guide_commands, wait_in_sandbox, why_no_sandbox

# The first test to run also builds the Debian root if it is not cached yet (about a minute
# and a half, more on a slow mirror); each check has a deadline of its own well inside this.
pytestmark = [pytest.mark.systemd_sandbox, pytest.mark.timeout(600)]

UNIT = "stagewatch.service"
CONFIG = "/etc/stagewatch/stagewatch.toml"
SITE = "/srv/stagewatch/site"
STAGEWATCH = f"/opt/stagewatch/bin/stagewatch --config {CONFIG}"
IDLE = "idle, 5 stages fresh"  # the guide's pipeline: 3 pages (the page pattern's instances), stats, index
PRIORITY_OF_LEVEL = {"debug": "7", "info": "6", "warning": "4", "error": "3", "critical": "2"}

Event = dict[str, Any]


def guide_block(section: int, containing: str) -> str:
    """The one shell block of the guide's section that holds `containing`."""
    found = [block for block in guide_commands(section) if containing in block]
    assert len(found) == 1, f"docs/operations.md section {section}: {len(found)} blocks with {containing!r}"
    return found[0]


def strict(script: str) -> str:
    return f"set -euxo pipefail\n{script}"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    reason = why_no_sandbox()
    if reason is not None:
        pytest.skip(f"no sandboxed systemd here: {reason}")
    logs = tmp_path_factory.mktemp("systemd-host")
    # Section 1 needs the network (pip), which the booted sandbox has not: it runs before the
    # boot, in a chroot of the sandbox's root. Sections 2 and 3 run in the booted system.
    install = strict("\n".join(guide_commands(1)))
    with booted_sandbox(install, logs / "sandbox.log", boot_timeout_s=540) as sandbox:
        sandbox.run(strict("\n".join(guide_commands(2))))
        sandbox.run(strict(guide_block(3, f"cp systemd/{UNIT}")))
        yield Host(sandbox, pipeline_file=sandbox.run(f"cat {CONFIG}").stdout)


def _if(properties: dict[str, str], **expected: str) -> dict[str, str] | None:
    return properties if all(properties.get(key) == value for key, value in expected.items()) else None


def idle_and_active(host: Host) -> dict[str, str]:
    return wait_in_sandbox(
        lambda: _if(host.properties(UNIT, "ActiveState", "StatusText", "MainPID"),
                    ActiveState="active", StatusText=IDLE),
        f"{UNIT} active and {IDLE!r}",
    )  # fmt: skip


def running_as_installed(host: Host) -> dict[str, str]:
    """The service as the guide left it: its pipeline file, running and idle."""
    if host.sandbox.run(f"cat {CONFIG}").stdout != host.pipeline_file:
        host.sandbox.run(f"cat > {CONFIG} <<'TOML'\n{host.pipeline_file}TOML")
    if host.properties(UNIT, "ActiveState")["ActiveState"] != "active":
        host.sandbox.run(f"systemctl restart {UNIT}")
    return idle_and_active(host)


def add_stage(host: Host, name: str, toml: str) -> None:
    """Append a stage to the pipeline file; the service sees the file saved and reloads it."""
    host.sandbox.run(f"cat >> {CONFIG} <<'TOML'\n\n[[stage]]\nname = \"{name}\"\n{toml}\nTOML")


def stage_event(host: Host, after: int, event: str, stage: str) -> Event:
    return host.wait_event(
        UNIT, after, lambda e: e.get("event") == event and e.get("stage") == stage, f"{event} for {stage}"
    )


def said_by_systemd(host: Host, unit: str, after: int) -> list[str]:
    return [str(entry.get("MESSAGE")) for entry in host.journal(unit, after) if entry.get("_PID") == "1"]


def failed_for_good(host: Host, unit: str, exit_status: str) -> dict[str, str]:
    """The unit failed with this exit status and nothing will start it again: not waiting to
    restart (that is SubState auto-restart), and no job queued."""
    properties = wait_in_sandbox(
        lambda: _if(host.properties(unit, "ActiveState", "SubState", "ExecMainStatus", "NRestarts"),
                    ActiveState="failed", SubState="failed", ExecMainStatus=exit_status),
        f"{unit} failed with exit status {exit_status}",
    )  # fmt: skip
    jobs = host.sandbox.run(f"systemctl list-jobs --no-legend {unit}").stdout
    assert jobs.strip() == "", jobs
    return properties


def test_start_reaches_active_with_stagewatch_status_line(host: Host) -> None:
    running_as_installed(host)
    host.sandbox.run(f"systemctl stop {UNIT}")
    host.sandbox.run(f"systemctl start {UNIT}")  # Type=notify: returns once stagewatch said READY=1
    assert host.properties(UNIT, "ActiveState")["ActiveState"] == "active"
    idle_and_active(host)
    shown = host.sandbox.run(f"systemctl status {UNIT}").stdout
    assert f'Status: "{IDLE}"' in shown, shown


def test_journal_holds_one_json_object_per_line_at_its_level_priority(host: Host) -> None:
    running_as_installed(host)
    lines = host.events(UNIT)
    assert any(line.get("event") == "stage.succeeded" for line in lines), lines
    for line in lines:
        assert "event" in line and "level" in line, f"not a JSON event: {line['_message']!r}"
        assert line["_priority"] == PRIORITY_OF_LEVEL[line["level"]], line
    # The guide's own way of reading what one stage printed.
    printed = host.sandbox.run(guide_block(5, '.stage == "stats"')).stdout
    assert "2 repos, 49 stars" in printed.splitlines(), printed


def test_an_input_edit_reruns_the_stage_and_its_downstream(host: Host) -> None:
    running_as_installed(host)
    before = host.mark()
    another = '\n[[repo]]\nname = "another"\nstars = 1\n'
    host.sandbox.run(f"cat >> {SITE}/data/repos.toml <<'TOML'\n{another}TOML", user="stagewatch")
    stats = stage_event(host, before, "stage.succeeded", "stats")
    index = stage_event(host, before, "stage.succeeded", "index")
    assert stats["timestamp"] < index["timestamp"]
    assert '"repos": 3' in host.sandbox.run(f"cat {SITE}/_build/stats.json").stdout
    assert "3 repositories, 50 stars" in host.sandbox.run(f"cat {SITE}/_build/site/index.html").stdout
    started = [e["stage"] for e in host.events(UNIT, before) if e.get("event") == "stage.started"]
    assert sorted(started) == ["index", "stats"]  # no page reads anything that changed
    idle_and_active(host)


def test_reload_goes_reloading_then_active_and_rereads_the_pipeline_file(host: Host) -> None:
    running_as_installed(host)
    before = host.mark()
    with host.active_states(UNIT) as states:
        host.sandbox.run(f"systemctl reload {UNIT}")
        wait_in_sandbox(lambda: "reloading" in states and states[-1] == "active", "reloading, then active")
    host.wait_event(
        UNIT, before,
        lambda e: e.get("event") in ("config.unchanged", "config.reloaded") and e.get("why") == "SIGHUP",
        "the pipeline file read again on SIGHUP",
    )  # fmt: skip
    idle_and_active(host)


def test_stop_while_a_long_stage_runs_exits_0_and_leaves_no_process(host: Host) -> None:
    running_as_installed(host)
    before = host.mark()
    # A stage that ignores SIGTERM (its sleep too): stagewatch's SIGKILL after the grace ends it.
    add_stage(host, "slow", """command = ['sh', '-c', 'trap "" TERM; sleep 600']""")
    stage_event(host, before, "stage.started", "slow")
    find_sleep = "pgrep -u stagewatch -x sleep"
    sleeping = wait_in_sandbox(lambda: host.sandbox.run(find_sleep, check=False).stdout, "the stage's sleep")
    began = time.monotonic()
    host.sandbox.run(f"systemctl stop {UNIT}")
    took_s = time.monotonic() - began
    shown = host.properties(UNIT, "ActiveState", "Result", "ExecMainStatus")
    assert shown == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, shown
    assert took_s < 20, f"the stop took {took_s:.1f} s; TimeoutStopSec=20s"
    left = host.sandbox.run("pgrep -u stagewatch -a", check=False)
    assert left.returncode == 1, f"left running: {left.stdout}"
    assert host.sandbox.run(f"test -d /proc/{sleeping.strip()}", check=False).returncode == 1
    assert any(e.get("event") == "stage.cancelled" for e in host.events(UNIT, before))
    kills = [line for line in said_by_systemd(host, UNIT, before) if "Killing process" in line]
    assert kills == [], f"systemd had to kill what stagewatch left: {kills}"


def test_a_stopped_daemon_is_restarted_by_the_watchdog(host: Host) -> None:
    stopped_pid = running_as_installed(host)["MainPID"]
    restarts = int(host.properties(UNIT, "NRestarts")["NRestarts"])
    before = host.mark()
    host.sandbox.run(f"kill -STOP {stopped_pid}")
    again = wait_in_sandbox(  # WatchdogSec=30s, then RestartSec=5s
        lambda: _if(host.properties(UNIT, "ActiveState", "MainPID", "NRestarts"),
                    ActiveState="active", NRestarts=str(restarts + 1)),
        "restarted by the watchdog", timeout_s=60, every_s=0.5,
    )  # fmt: skip
    assert again["MainPID"] not in ("0", stopped_pid)
    said = said_by_systemd(host, UNIT, before)
    assert any("Watchdog timeout" in line for line in said), said
    idle_and_active(host)


def test_build_is_refused_while_the_unit_runs(host: Host) -> None:
    pid = running_as_installed(host)["MainPID"]
    refused = host.sandbox.run(f"{STAGEWATCH} build", user="stagewatch", check=False)
    assert refused.returncode == 1, refused
    assert f"(pid {pid})" in refused.stderr, refused.stderr
    assert "stagewatch invalidate STAGE" in refused.stderr, refused.stderr


def test_invalidate_makes_the_service_run_the_stage_again(host: Host) -> None:
    running_as_installed(host)
    before = host.mark()
    said = host.sandbox.run(f"{STAGEWATCH} invalidate stats", user="stagewatch")
    assert said.stdout.strip() == "stats: invalidated"
    stage_event(host, before, "stage.succeeded", "stats")
    idle_and_active(host)


def test_a_broken_pipeline_file_fails_the_unit_once_with_a_json_error(host: Host) -> None:
    running_as_installed(host)
    host.sandbox.run(f"systemctl stop {UNIT}")
    host.sandbox.run(f"sed -i 's/^outputs = /output = /' {CONFIG}")
    before = host.mark()
    started = host.sandbox.run(f"systemctl start {UNIT}", check=False)
    assert started.returncode != 0
    shown = failed_for_good(host, UNIT, exit_status="2")
    assert shown["NRestarts"] == "0", shown
    lines = host.events(UNIT, before)
    assert [line.get("event") for line in lines] == ["config.invalid"], lines
    assert lines[0]["_priority"] == "3" and lines[0]["level"] == "error"
    problems = host.sandbox.run(guide_block(6, '"config.invalid"')).stdout.splitlines()
    assert f'{CONFIG}: stage "page": unknown key "output" (did you mean "outputs"?)' in problems, problems
    errors = host.sandbox.run(guide_block(5, "-p err")).stdout
    assert '"event": "config.invalid"' in errors, errors
    running_as_installed(host)  # the guide's way out: fix the file, then restart


def test_a_missing_output_folder_fails_the_instance_without_a_restart_loop(host: Host) -> None:
    # The guide's commands for one instance per pipeline, but its folder was never made.
    commands = guide_block(3, "systemctl enable --now stagewatch@blog.service").splitlines()
    makes_folder = [line for line in commands if line.startswith("mkdir -p /srv/stagewatch/blog")]
    assert len(makes_folder) == 1, commands
    host.sandbox.run(f"sed 's#{SITE}#/srv/stagewatch/blog#' {CONFIG} > /etc/stagewatch/blog.toml")
    enabled = host.sandbox.run("\n".join(line for line in commands if line not in makes_folder), check=False)
    assert enabled.returncode != 0, enabled
    instance = "stagewatch@blog.service"
    shown = failed_for_good(host, instance, exit_status="226")
    assert shown["NRestarts"] == "0", shown
    # Said by the service's own process before its exec, which reaches the journal on a path of
    # its own: it may come after systemd's lines about the failure.
    wait_in_sandbox(
        lambda: (
            "/srv/stagewatch/blog: No such file or directory"
            in host.sandbox.run(f"journalctl -u {instance} -o cat").stdout
        ),
        "the journal names the missing folder",
    )
    host.sandbox.run(f"systemctl disable {instance}")


def test_an_output_folder_moved_away_fails_the_unit_after_one_restart(host: Host) -> None:
    running_as_installed(host)
    restarts = int(host.properties(UNIT, "NRestarts")["NRestarts"])
    before = host.mark()
    host.sandbox.run(f"mv {SITE} {SITE}.away")
    try:
        host.wait_event(UNIT, before, lambda e: e.get("event") == "watch.output_dir_gone", "output_dir_gone")
        shown = failed_for_good(host, UNIT, exit_status="226")
        assert int(shown["NRestarts"]) == restarts + 1, shown
    finally:
        host.sandbox.run(f"mv {SITE}.away {SITE}")
    host.sandbox.run(f"systemctl restart {UNIT}")
    idle_and_active(host)


def test_stages_write_their_folder_and_home_and_nothing_else(host: Host) -> None:
    running_as_installed(host)
    before = host.mark()
    # A folder the service's user owns, outside the output folder: only the unit keeps it read-only.
    host.sandbox.run("install -d -o stagewatch -g stagewatch /srv/stagewatch/elsewhere")
    probe = (
        'touch "$HOME/probe" && echo home writable; '
        "touch /srv/stagewatch/elsewhere/probe 2>/dev/null || echo elsewhere read-only; touch _build/probe"
    )
    add_stage(host, "probe", f"command = ['sh', '-c', '{probe}']\noutputs = ['_build/probe']")
    stage_event(host, before, "stage.succeeded", "probe")
    printed = [e.get("line") for e in host.events(UNIT, before) if e.get("event") == "stage.output"]
    assert printed == ["home writable", "elsewhere read-only"], printed
    assert host.sandbox.run("test -f /var/cache/stagewatch/probe", check=False).returncode == 0
