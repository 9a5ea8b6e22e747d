"""What every bench script shares: the machine, generated work trees, timing, a daemon harness, tables.

Only public tools: the standard library, make, doit, sha256sum and stagewatch's own command line
(`python -m stagewatch ...` and its JSON log events), so the scripts keep working while
stagewatch's insides change.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"

# As on a user's machine: compiled bytecode is cached (some sandboxes turn that off).
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
for _name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "STAGEWATCH_CONFIG", "JOURNAL_STREAM"):
    ENV.pop(_name, None)  # the harness decides these, never the shell the bench runs in

STAGEWATCH = (sys.executable, "-m", "stagewatch")
DEBOUNCE_S = 0.1  # every generated pipeline says debounce = "100ms"


# --- the machine ---


def _first_line_with(path: str, prefix: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    return None


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding path (the longest mount point above it), from /proc/mounts."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount = parts[1].replace("\\040", " ")
            inside = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best):
                best, kind = mount, parts[2]
    return f"{kind} ({best})" if best else kind


def tool_version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, env=ENV, check=False).stdout
    except OSError:
        return "not installed"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def machine() -> list[tuple[str, str]]:
    """What the figures were measured on: cores, CPU, RAM, Python, kernel, filesystem, tools, commit."""
    mem_kib = _first_line_with("/proc/meminfo", "MemTotal")
    ram = f"{int(mem_kib.split()[0]) / 2**20:.1f} GiB" if mem_kib else "unknown"
    commit = subprocess.run(  # the code measured: the last commit that changed the package
        ["git", "-C", str(REPO), "log", "-1", "--format=%h %cs %s", "--", "stagewatch"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "stagewatch"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    WORK.mkdir(parents=True, exist_ok=True)
    return [
        ("cores", str(os.cpu_count())),
        ("CPU", _first_line_with("/proc/cpuinfo", "model name") or platform.processor() or "unknown"),
        ("RAM", ram),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("work folder", f"{WORK} on {filesystem_of(WORK)}"),
        ("make", tool_version(["make", "--version"])),
        ("doit", tool_version([sys.executable, "-m", "doit", "--version"])),
        ("stagewatch", (commit[:80] or "unknown") + (" (with uncommitted changes)" if dirty else "")),
        ("load, start", load()),
    ]


def load() -> str:
    """The load averages: other work on the machine shows in every figure, less in the ratios."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f} (1, 5, 15 min)"


# --- timing ---


@dataclass
class Timed:
    """One command to time: argv in a folder, with something to do (untimed) before each run."""

    argv: Sequence[str]
    cwd: Path
    before: Callable[[], object] | None = None
    env: dict[str, str] | None = None


def run_once(cmd: Timed) -> float:
    """Seconds one run of cmd takes, from spawn to exit; a failure stops the bench, saying why."""
    if cmd.before is not None:
        cmd.before()
    start = time.perf_counter()
    proc = subprocess.run(
        list(cmd.argv),
        cwd=cmd.cwd,
        env=cmd.env or ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd.argv)} in {cmd.cwd} failed ({proc.returncode}): {proc.stderr[-800:]}"
        )
    return elapsed


def interleaved(commands: dict[str, Timed], runs: int, warmup: bool = True) -> dict[str, list[float]]:
    """Time each command `runs` times, taking turns (A B C A B C ...), so that a ratio of two of
    them is measured under the same conditions; one untimed run of each first when `warmup`."""
    if warmup:
        for cmd in commands.values():
            run_once(cmd)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            times[name].append(run_once(cmd))
    return times


# --- the table ---


@dataclass
class Row:
    """One line of the table: a measure's values (seconds, a ratio, a percentage or MiB)."""

    section: str
    label: str
    values: list[float]
    unit: str = "s"  # "s" (shown in ms or s), "x" (a ratio), "%", "MiB", "runs"
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)

    def add(self, section: str, label: str, values: Iterable[float], unit: str = "s", note: str = "") -> Row:
        row = Row(section, label, list(values), unit, note)
        self.rows.append(row)
        return row

    def ratio(self, section: str, label: str, top: Row, bottom: Row, note: str = "") -> Row:
        """The ratio of two rows' medians (measured side by side in one run)."""
        return self.add(section, label, [top.median / bottom.median], "x", note)


def show(value: float, unit: str) -> str:
    if unit == "s":
        return (
            f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s" if value < 100 else f"{value:.0f} s"
        )
    if unit == "x":
        return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:g}"


def cells(row: Row) -> list[str]:
    if len(row.values) == 1:
        return [row.label, show(row.median, row.unit), "", "", "" if row.unit == "x" else "1", row.note]
    return [
        row.label,
        show(row.median, row.unit),
        show(min(row.values), row.unit),
        show(max(row.values), row.unit),
        str(len(row.values)),
        row.note,
    ]


HEADER = ["measure", "median", "min", "max", "n", "note"]


def render_text(table: Table) -> str:
    body = [cells(row) for row in table.rows]
    widths = [max(len(line[i]) for line in [HEADER, *body]) for i in range(len(HEADER))]
    out: list[str] = []
    section = None
    for row, line in zip(table.rows, body, strict=True):
        if row.section != section:
            section = row.section
            out.append(f"\n{section}")
        padded = [line[0].ljust(widths[0]), *(cell.rjust(widths[i + 1]) for i, cell in enumerate(line[1:5]))]
        out.append("  " + "  ".join(padded) + (f"  {line[5]}" if line[5] else ""))
    head = [HEADER[0].ljust(widths[0]), *(h.rjust(widths[i + 1]) for i, h in enumerate(HEADER[1:5]))]
    return "  " + "  ".join(head) + "\n".join(out)


def render_markdown(table: Table) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    section = None
    for row in table.rows:
        if row.section != section:
            section = row.section
            lines.append(f"| **{section}** | | | | | |")
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells(row)) + " |")
    return "\n".join(lines)


# --- generated work trees ---


def tree(name: str, spec: dict[str, object], write: Callable[[Path], None]) -> Path:
    """bench/_work/<name>, written by `write` unless a complete tree of the same spec is there
    (files edited by a bench since are fine: every measure warms up or starts from what it needs)."""
    root = WORK / name
    marker = root / ".bench-tree.json"
    wanted = json.dumps(spec, sort_keys=True)
    with contextlib.suppress(OSError):
        if marker.read_text() == wanted:
            return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    print(f"  writing {root} ...", file=sys.stderr, flush=True)
    write(root)
    marker.write_text(wanted)
    return root


def _block(size: int, stage: int, number: int, seed: bytes) -> bytes:
    # one random block per tree, made unique per file by its tail: no two files share a digest
    return seed[: size - 8] + stage.to_bytes(4, "big") + number.to_bytes(4, "big")


BIG_STAGES, BIG_FILES, BIG_SIZE = 200, 25, 64 * 1024  # 5,000 files, 320 MiB
BIG_SPEC = {"version": 1, "stages": BIG_STAGES, "files": BIG_FILES, "size": BIG_SIZE}


def folder_tree() -> Path:
    """Shape A: 200 command stages, each reading a folder of 25 files of 64 KiB (5,000 files, 320 MiB),
    with the equivalent Makefile and dodo.py."""

    def write(root: Path) -> None:
        stages, files, size = BIG_STAGES, BIG_FILES, BIG_SIZE
        seed = os.urandom(size)
        config = ['[pipeline]\njobs = 2\ndebounce = "100ms"\n']
        make = [".PHONY: all", "all: " + " ".join(f"out/s{s:04}.txt" for s in range(stages)), ""]
        for s in range(stages):
            name = f"s{s:04}"
            folder = root / "in" / name
            folder.mkdir(parents=True)
            for f in range(files):
                (folder / f"f{f:02}.bin").write_bytes(_block(size, s, f, seed))
            script = f"cat in/{name}/* | wc -c > out/{name}.txt"
            config.append(
                f'[[stage]]\nname = "{name}"\ncommand = ["sh", "-c", "{script}"]\n'
                f'inputs = ["in/{name}/"]\noutputs = ["out/{name}.txt"]\n'
            )
            deps = " ".join(f"in/{name}/f{f:02}.bin" for f in range(files))
            make += [f"out/{name}.txt: {deps}", f"\t{script}", ""]
        (root / "out").mkdir()
        (root / "stagewatch.toml").write_text("\n".join(config))
        (root / "Makefile").write_text("\n".join(make))
        (root / "dodo.py").write_text(
            "import glob\n\n\n"
            "def task_stage():\n"
            f"    for s in range({stages}):\n"
            '        name = f"s{s:04}"\n'
            "        yield {\n"
            '            "name": name,\n'
            '            "file_dep": sorted(glob.glob(f"in/{name}/*")),\n'
            '            "targets": [f"out/{name}.txt"],\n'
            '            "actions": [f"cat in/{name}/* | wc -c > out/{name}.txt"],\n'
            "        }\n"
        )

    return tree("shape-a-folders-commands", {"shape": "A", **BIG_SPEC}, write)


MODULE_COMMON = '''"""Shared by every stage module: the byte count of a stage's content, as its output."""

from pathlib import Path


def summarize(output_dir: Path, name: str) -> None:
    total = sum(len(path.read_bytes()) for path in sorted((output_dir / "content" / name).rglob("*.md")))
    out = output_dir / "_build" / "out" / f"{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"{total}\\n")
'''

MODULE_STAGE = '''"""Stage {name}."""

from pathlib import Path

from pipeline.common import summarize


def run(output_dir: Path) -> None:
    summarize(output_dir, "{name}")
'''


def module_input(s: int, f: int) -> str:
    """Shape B's file f of stage s: spread over four subfolders, as `content/**/*.md` finds them."""
    return f"content/s{s:04}/part{f % 4}/f{f:02}.md"


def module_tree() -> Path:
    """Shape B: 200 module stages (importing pipeline/common.py), each reading `content/sNNNN/**/*.md`,
    25 files of 64 KiB in four subfolders (5,000 files, 320 MiB), with the equivalent Makefile and dodo.py."""

    def write(root: Path) -> None:
        stages, files, size = BIG_STAGES, BIG_FILES, BIG_SIZE
        seed = os.urandom(size)
        (root / "pipeline").mkdir()
        (root / "pipeline" / "__init__.py").write_text("")
        (root / "pipeline" / "common.py").write_text(MODULE_COMMON)
        config = ['[pipeline]\njobs = 2\ndebounce = "100ms"\npython_path = ["."]\n']
        make = [
            "PYTHON ?= python3",
            ".PHONY: all",
            "all: " + " ".join(f"_build/out/s{s:04}.txt" for s in range(stages)),
            "",
        ]
        for s in range(stages):
            name = f"s{s:04}"
            for f in range(files):
                path = root / module_input(s, f)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_block(size, s, f, seed))
            (root / "pipeline" / f"{name}.py").write_text(MODULE_STAGE.format(name=name))
            config.append(
                f'[[stage]]\nname = "{name}"\nmodule = "pipeline.{name}"\n'
                f'inputs = ["content/{name}/**/*.md"]\noutputs = ["_build/out/{name}.txt"]\n'
            )
            deps = " ".join([*(module_input(s, f) for f in range(files)), f"pipeline/{name}.py"])
            make += [
                f"_build/out/{name}.txt: {deps} pipeline/common.py",
                f"\t$(PYTHON) -c 'from pipeline.{name} import run; from pathlib import Path; run(Path())'",
                "",
            ]
        (root / "stagewatch.toml").write_text("\n".join(config))
        (root / "Makefile").write_text("\n".join(make))
        (root / "dodo.py").write_text(
            "import glob\nimport sys\n\n\n"
            "def task_stage():\n"
            f"    for s in range({stages}):\n"
            '        name = f"s{s:04}"\n'
            "        code = f\"from pathlib import Path; from pipeline.{name} import run; run(Path('.'))\"\n"
            "        yield {\n"
            '            "name": name,\n'
            '            "file_dep": sorted(glob.glob(f"content/{name}/**/*.md", recursive=True))\n'
            '            + [f"pipeline/{name}.py", "pipeline/common.py"],\n'
            '            "targets": [f"_build/out/{name}.txt"],\n'
            '            "actions": [[sys.executable, "-c", code]],\n'
            "        }\n"
        )

    return tree("shape-b-modules-globs", {"shape": "B", **BIG_SPEC}, write)


def glob_tree(stages: int, files: int) -> Path:
    """`stages` command stages with glob inputs (`d/sNNNN/*.txt`, `files` small files each), writing
    `_build/out/sNNNN.txt`: the scaling trees (5 files a stage) and the many-file daemon trees."""

    def write(root: Path) -> None:
        config = ['[pipeline]\njobs = 2\ndebounce = "100ms"\n']
        for s in range(stages):
            name = f"s{s:04}"
            folder = root / "d" / name
            folder.mkdir(parents=True)
            for f in range(files):
                (folder / f"f{f:03}.txt").write_text(f"{name} file {f}\n")
            script = f"mkdir -p _build/out && cat d/{name}/*.txt > _build/out/{name}.txt"
            config.append(
                f'[[stage]]\nname = "{name}"\ncommand = ["sh", "-c", "{script}"]\n'
                f'inputs = ["d/{name}/*.txt"]\noutputs = ["_build/out/{name}.txt"]\n'
            )
        (root / "stagewatch.toml").write_text("\n".join(config))

    return tree(
        f"glob-{stages}x{files}", {"shape": "glob", "version": 1, "stages": stages, "files": files}, write
    )


def stagewatch_build(root: Path, *extra: str) -> Timed:
    return Timed([*STAGEWATCH, "-q", "build", *extra], root)


def ensure_built(root: Path) -> float:
    """Bring a tree up to date once (untimed for the table); returns the seconds it took."""
    return run_once(stagewatch_build(root))


def remove_build(root: Path) -> None:
    """Never built: no entries, no digest cache, no outputs."""
    shutil.rmtree(root / "_build", ignore_errors=True)


# --- the daemon ---


def stamp_s(event: dict[str, object]) -> float:
    """An event's wall-clock time, from its ISO `timestamp`."""
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


class Daemon:
    """`stagewatch --log-format json watch` in a tree, with a notify socket of our own bound as
    $NOTIFY_SOCKET: every log event and sd_notify datagram is kept with the monotonic time it
    arrived. Use as a context manager: the daemon and its process group never outlive it."""

    def __init__(self, root: Path, watchdog_usec: int | None = None) -> None:
        self.root = root
        self.events: list[tuple[float, dict[str, object]]] = []
        self.notes: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self._dir = Path(tempfile.mkdtemp(prefix="swbench-"))  # short: a socket path has ~100 bytes
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.bind(str(self._dir / "notify"))
        self._sock.settimeout(0.2)
        self._closed = False
        env = dict(ENV, NOTIFY_SOCKET=str(self._dir / "notify"))
        if watchdog_usec is not None:
            # No WATCHDOG_PID (the pid is not known before the spawn): the watchdog is then the reader's.
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self._stderr = (self._dir / "stderr").open("w")
        self.spawned = time.monotonic()
        self.proc = subprocess.Popen(
            [*STAGEWATCH, "--log-format", "json", "watch"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,  # its own process group, and no controlling terminal: SIGHUP reloads
        )
        self._threads = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_notes, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            arrived = time.monotonic()
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "(not json)", "line": line.rstrip()}
            with self.cond:
                self.events.append((arrived, event))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_notes(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            arrived = time.monotonic()
            with self.cond:
                for line in data.decode(errors="replace").splitlines():
                    self.notes.append((arrived, line))
                self.cond.notify_all()

    def _why_not(self, what: str, timeout_s: float) -> SystemExit:
        self.stop()
        tail = (self._dir / "stderr").read_text()[-1500:] if (self._dir / "stderr").exists() else ""
        last = [event.get("event") for _, event in self.events[-8:]]
        return SystemExit(
            f"daemon in {self.root}: no {what} within {timeout_s:.0f} s"
            f" (exit status {self.proc.returncode}; last events {last}); stderr: {tail}"
        )

    def wait_event(
        self, name: str, since: int = 0, timeout_s: float = 120.0, stage: str | None = None
    ) -> int:
        """Index of the first event `name` (of `stage`, if given) at or after index `since`."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                for index in range(since, len(self.events)):
                    event = self.events[index][1]
                    if event.get("event") == name and (stage is None or event.get("stage") == stage):
                        return index
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise self._why_not(f"{name} event", timeout_s)
                self.cond.wait(0.1)

    def wait_note(self, text: str, since: int = 0, timeout_s: float = 120.0) -> int:
        """Index of the first sd_notify line equal to `text` at or after index `since`."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                for index in range(since, len(self.notes)):
                    if self.notes[index][1] == text:
                        return index
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise self._why_not(f"{text} notification", timeout_s)
                self.cond.wait(0.1)

    def stats(self) -> tuple[float, float, float]:
        """(CPU seconds used so far, VmRSS MiB, VmHWM MiB), from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        status = {
            line.split(":")[0]: int(line.split()[1]) / 1024
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
            if line.startswith(("VmRSS:", "VmHWM:"))
        }
        return cpu_s, status.get("VmRSS", 0.0), status.get("VmHWM", 0.0)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole group if it lingers; always leaves nothing running."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    print(f"  daemon {self.proc.pid} did not stop in 30 s: killing it", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # its group: anything it left behind
            self.proc.wait(timeout=30)
        finally:
            self._sock.close()
            self._stderr.close()
            for thread in self._threads:
                thread.join(timeout=5)
            shutil.rmtree(self._dir, ignore_errors=True)
