"""A build host under a real systemd: a Debian root booted by tests/sandbox/systemd-sandbox
(systemd as PID 1 of namespaces of its own, never on this machine's root), stagewatch
installed in it by the commands of docs/operations.md, and driven from here with nsenter."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tests.helpers.paths import REPO
from tests.helpers.waiting import wait_until

GUIDE = REPO / "docs" / "operations.md"
SANDBOX_TOOL = REPO / "tests" / "sandbox" / "systemd-sandbox"
# The guide's one placeholder: where the checkout is. The sandbox copies it to /root/src.
CHECKOUT_PLACEHOLDER = "/path/to/a/checkout/of/stagewatch"
CHECKOUT_IN_SANDBOX = "/root/src"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

T = TypeVar("T")


def cache_dir() -> Path:
    """Where the Debian root (built once, about a minute) and pip's downloads are kept between
    runs: outside the checkout, so neither a clean step nor the copy into the sandbox takes it."""
    chosen = os.environ.get("STAGEWATCH_SANDBOX_CACHE")
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stagewatch" / "systemd-sandbox"


def guide_commands(section: int) -> list[str]:
    """The shell blocks (```sh) of the guide's section "## <section>. ...", in order, with
    the checkout's placeholder filled in."""
    text = GUIDE.read_text(encoding="utf-8")
    found = re.search(rf"^## {section}\. .*?(?=^## |\Z)", text, flags=re.M | re.S)
    assert found, f"{GUIDE}: no section {section}"
    blocks = re.findall(r"^```sh\n(.*?)^```", found.group(0), flags=re.M | re.S)
    return [block.replace(CHECKOUT_PLACEHOLDER, CHECKOUT_IN_SANDBOX) for block in blocks]


def _debian_mirror() -> str | None:
    """The mirror the sandbox's debootstrap uses: this host's first apt source (as the tool does)."""
    if os.environ.get("SDSANDBOX_MIRROR"):
        return os.environ["SDSANDBOX_MIRROR"]
    sources = [*sorted(Path("/etc/apt/sources.list.d").glob("*.sources")), Path("/etc/apt/sources.list")]
    for source in sources:
        with contextlib.suppress(OSError):
            for line in source.read_text(encoding="utf-8", errors="replace").splitlines():
                words = line.split()
                if words[:1] == ["URIs:"] and len(words) > 1 and "-security" not in words[1]:
                    return words[1]
                if words[:1] == ["deb"]:
                    urls = [word for word in words[1:] if "://" in word]
                    if urls:
                        return urls[0]
    return None


def _reachable(url: str) -> bool:
    host = re.sub(r"^[a-z]+://", "", url).split("/")[0]
    port = 443 if url.startswith("https") else 80
    try:
        with socket.create_connection((host.split(":")[0], port), timeout=5):
            return True
    except OSError:
        return False


def _is_cgroup2(path: str) -> bool:
    found = subprocess.run(["stat", "-fc", "%T", path], capture_output=True, text=True, timeout=10)
    return found.stdout.strip() == "cgroup2fs"


def _runs_systemd() -> bool:
    """Whether this machine was booted with systemd (sd_booted()'s test, and PID 1's name)."""
    with contextlib.suppress(OSError):
        if Path("/proc/1/comm").read_text(encoding="utf-8").strip() == "systemd":
            return True
    return Path("/run/systemd/system").is_dir()


def why_no_sandbox() -> str | None:
    """Why a sandboxed systemd cannot be booted on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "booting a systemd in namespaces of its own needs root"
    if _runs_systemd():
        return "this machine runs systemd as PID 1: the sandbox needs a cgroup2 hierarchy no systemd manages"
    if not (_is_cgroup2("/sys/fs/cgroup") or _is_cgroup2("/sys/fs/cgroup/unified")):
        return "no cgroup2 hierarchy is mounted"
    for tool in ("unshare", "nsenter", "setpriv", "bash"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "--cgroup", "true"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"new namespaces are refused here ({probe.stderr.strip() or probe.returncode})"
    if not (cache_dir() / "root" / ".sdsandbox-ready").exists():
        if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
            return "the Debian root is not built yet, and neither debootstrap nor apt-get is here to build it"
        mirror = _debian_mirror()
        if mirror is None:
            return "the Debian root is not built yet, and this machine names no Debian mirror"
        if not _reachable(mirror):
            return f"the Debian root is not built yet, and the mirror {mirror} cannot be reached"
    if not _reachable("https://pypi.org/simple/"):
        return "installing stagewatch as the guide says needs PyPI, which cannot be reached"
    return None


def wait_in_sandbox(fact: Callable[[], T], what: str, timeout_s: float = 30.0, every_s: float = 0.1) -> T:
    """wait_until at the sandbox's pace: each look runs a command in it, and systemd's own delays
    are seconds long."""
    return wait_until(fact, timeout_s, what, every_s)


class Sandbox:
    """A booted systemd with stagewatch installed; run() is a root shell inside it."""

    def __init__(self, install_script: str, log_path: Path) -> None:
        self.log_path = log_path
        self.init_pid: int | None = None
        self._booted = threading.Event()
        self._log_lines: list[str] = []
        install = log_path.with_name("install.sh")
        install.write_text(install_script, encoding="utf-8")
        # The command inside reads its stdin to the end: closing it powers the sandbox off.
        self.proc = subprocess.Popen(
            ["bash", str(SANDBOX_TOOL), "--install", str(install), str(cache_dir()), str(REPO),
             "--", "cat"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        with self.log_path.open("a", encoding="utf-8") as saved:
            for line in self.proc.stderr:
                saved.write(line)
                saved.flush()
                self._log_lines.append(line)
                booted = re.search(r"sandbox PID 1 = host pid (\d+)", line)
                if booted:
                    self.init_pid = int(booted.group(1))
                    self._booted.set()
        self._booted.set()  # the tool ended: whoever waits sees it

    def wait_booted(self, timeout_s: float) -> None:
        if not self._booted.wait(timeout_s) or self.init_pid is None:
            raise AssertionError(
                f"the sandbox did not boot within {timeout_s:g} s:\n" + "".join(self._log_lines[-40:])
            )

    def run(
        self, script: str, *, user: str | None = None, timeout_s: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """bash -c script inside the sandbox: as root in the copy of the checkout, or as user in /."""
        assert self.init_pid is not None
        argv = ["bash", "-c", f"cd {CHECKOUT_IN_SANDBOX if user is None else '/'} && {script}"]
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        proc = subprocess.run(
            ["nsenter", "-t", str(self.init_pid), "-a",
             "env", "-i", f"PATH={CLEAN_PATH}", "HOME=/root", "LANG=C.UTF-8", "SYSTEMD_PAGER=cat", *argv],
            capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
        if check and proc.returncode != 0:
            said = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            raise AssertionError(f"in the sandbox, exit {proc.returncode}: {script}\n{said}")
        return proc

    def close(self) -> None:
        """Power the sandbox off (the tool's teardown removes its run folder and cgroup)."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@contextlib.contextmanager
def booted_sandbox(install_script: str, log_path: Path, boot_timeout_s: float) -> Iterator[Sandbox]:
    sandbox = Sandbox(install_script, log_path)
    try:
        sandbox.wait_booted(boot_timeout_s)
        yield sandbox
    finally:
        sandbox.close()


def _sequence_number(cursor: str) -> int:
    """The entry's sequence number from its cursor ("s=...;i=5f;b=...")."""
    found = re.search(r"\bi=([0-9a-f]+)", cursor)
    assert found, cursor
    return int(found.group(1), 16)


class Host:
    """What a build host's operator asks systemd and the journal, as values."""

    def __init__(self, sandbox: Sandbox, pipeline_file: str = "") -> None:
        self.sandbox = sandbox
        self.pipeline_file = pipeline_file  # the pipeline file as installed, to put back

    @contextlib.contextmanager
    def active_states(self, unit: str) -> Iterator[list[str]]:
        """Every ActiveState the unit passes through while the block runs, as systemd announces
        them on D-Bus (a reload can be over before any polling would see it)."""
        assert self.sandbox.init_pid is not None
        path = "/org/freedesktop/systemd1/unit/" + "".join(
            char if char.isalnum() else f"_{ord(char):02x}" for char in unit
        )
        match = f"type=signal,path={path},interface=org.freedesktop.DBus.Properties,member=PropertiesChanged"
        monitor = subprocess.Popen(
            ["nsenter", "-t", str(self.sandbox.init_pid), "-a", "env", "-i", f"PATH={CLEAN_PATH}",
             "bash", "-c", 'echo "$$"; exec busctl monitor --json=short --match="$1"', "monitor", match],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert monitor.stdout is not None and monitor.stderr is not None
        pid_inside = monitor.stdout.readline().strip()
        states: list[str] = []

        def collect() -> None:
            assert monitor.stdout is not None
            for line in monitor.stdout:
                with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                    states.append(json.loads(line)["payload"]["data"][1]["ActiveState"]["data"])

        reader = threading.Thread(target=collect, daemon=True)
        reader.start()
        try:
            # busctl says this once its match is in place: nothing after it is missed.
            ready = monitor.stderr.readline()
            assert "Monitoring" in ready, ready
            yield states
        finally:
            self.sandbox.run(f"kill {pid_inside}", check=False)
            monitor.wait(timeout=30)
            reader.join(timeout=10)
            monitor.stdout.close()
            monitor.stderr.close()

    def properties(self, unit: str, *names: str) -> dict[str, str]:
        shown = self.sandbox.run(f"systemctl show {unit} " + " ".join(f"-p {name}" for name in names))
        return dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)

    def mark(self) -> int:
        """The journal's position now: entries written later have a greater sequence number."""
        shown = self.sandbox.run("journalctl -n 0 --show-cursor --quiet")
        return _sequence_number(shown.stdout)

    def journal(self, unit: str, after: int | None = None) -> list[dict[str, Any]]:
        """The unit's journal entries (after a mark), as journalctl -o json gives them.

        Filtered here, not with --after-cursor: journalctl 252 given both a cursor and a unit
        can skip entries written after the cursor.
        """
        shown = self.sandbox.run(f"journalctl -u {unit} -o json --no-pager")
        entries = [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]
        return [entry for entry in entries if after is None or _sequence_number(entry["__CURSOR"]) > after]

    def events(self, unit: str, after: int | None = None) -> list[dict[str, Any]]:
        """stagewatch's own lines (not systemd's) of the unit, parsed, with their journald PRIORITY."""
        found = []
        for entry in self.journal(unit, after):
            if entry.get("_PID") == "1" or entry.get("_TRANSPORT") != "stdout":
                continue
            message = entry.get("MESSAGE")
            try:
                event = json.loads(message) if isinstance(message, str) else None
            except ValueError:
                event = None
            found.append({"_priority": entry.get("PRIORITY"), "_message": message, **(event or {})})
        return found

    def wait_event(
        self, unit: str, after: int, match: Callable[[dict[str, Any]], bool], what: str, timeout_s: float = 30
    ) -> dict[str, Any]:
        def first_match() -> dict[str, Any] | None:
            return next((event for event in self.events(unit, after) if match(event)), None)

        try:
            return wait_in_sandbox(first_match, what, timeout_s)
        except AssertionError as missing:
            recent = self.sandbox.run(f"journalctl -u {unit} -n 30 -o cat --no-pager", check=False).stdout
            raise AssertionError(f"{missing}\nthe unit's last journal lines:\n{recent}") from None
