"""Soak the daemon: random edits, editors' saves, bursts, reloads, SIGHUPs, restarts and `kill -9`
while stages with grandchildren run; at the end every output must equal what its final inputs give.

    python bench/soak.py                  # 10 minutes, seed 1
    python bench/soak.py --minutes 2 --seed 7

Prints one table of figures, and exits 1 when an output is wrong, a stage process outlived a
killed daemon, or the daemon did not settle.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CONFIG = """
[pipeline]
debounce = "{debounce}"
jobs = 2

[[stage]]
name = "pages"
command = ["sh", "-c", "python3 gen_pages.py"]
inputs = ["content/**/*.md", "tpl/header.txt"]
outputs = ["out/pages/"]

[[stage]]
name = "index"
module = "stages.index"
inputs = ["out/pages/"]
outputs = ["out/index.txt"]

[[stage]]
name = "data"
command = ["sh", "-c", "python3 sum_data.py"]
inputs = ["data/*.csv"]
outputs = ["out/data.txt"]

[[stage]]
name = "report"
command = ["sh", "-c", "cat out/index.txt out/data.txt > out/report.txt"]
inputs = ["out/index.txt", "out/data.txt"]
outputs = ["out/report.txt"]
"""

# Each generator records its pid (a grandchild of stagewatch, under sh) and takes a moment,
# so that kills land in the middle of runs.
GEN_PAGES = """
import os, pathlib, random, time
root = pathlib.Path(".")
(root / "pids").mkdir(exist_ok=True)
(root / "pids" / f"pages-{os.getpid()}").write_text("")
time.sleep(random.uniform(0.05, 0.4))
header = (root / "tpl/header.txt").read_text()
pages = root / "out/pages"
pages.mkdir(parents=True, exist_ok=True)
wanted = set()
for source in sorted((root / "content").rglob("*.md")):
    name = source.relative_to(root / "content").as_posix().replace("/", "__")[:-3] + ".html"
    wanted.add(name)
    (pages / name).write_text(header + source.read_text().upper())
for old in pages.iterdir():
    if old.name not in wanted:
        old.unlink()
"""
SUM_DATA = """
import os, pathlib, random, time
root = pathlib.Path(".")
(root / "pids").mkdir(exist_ok=True)
(root / "pids" / f"data-{os.getpid()}").write_text("")
time.sleep(random.uniform(0.05, 0.4))
total = 0
for source in sorted((root / "data").glob("*.csv")):
    total += sum(int(x) for x in source.read_text().split(",") if x.strip())
(root / "out").mkdir(exist_ok=True)
(root / "out/data.txt").write_text(f"total {total}\\n")
"""
INDEX = """
import hashlib

def run(out):
    lines = []
    for page in sorted((out / "out/pages").iterdir()):
        lines.append(page.name + " " + hashlib.sha256(page.read_bytes()).hexdigest()[:12])
    (out / "out/index.txt").write_text("\\n".join(lines) + "\\n")
"""
ENV = {key: value for key, value in os.environ.items() if key not in ("STAGEWATCH_CONFIG",)}


def expected_outputs(root: Path) -> dict[str, str]:
    """What the final inputs give, computed here without stagewatch."""
    header = (root / "tpl/header.txt").read_text()
    pages = {}
    for source in sorted((root / "content").rglob("*.md")):
        name = source.relative_to(root / "content").as_posix().replace("/", "__")[:-3] + ".html"
        pages[name] = header + source.read_text().upper()
    index = "\n".join(
        f"{name} {hashlib.sha256(text.encode()).hexdigest()[:12]}" for name, text in sorted(pages.items())
    )
    total = sum(
        int(x)
        for source in sorted((root / "data").glob("*.csv"))
        for x in source.read_text().split(",")
        if x.strip()
    )
    data = f"total {total}\n"
    outputs = {f"out/pages/{name}": text for name, text in pages.items()}
    outputs["out/index.txt"] = index + "\n"
    outputs["out/data.txt"] = data
    outputs["out/report.txt"] = index + "\n" + data
    return outputs


def actual_outputs(root: Path) -> dict[str, str]:
    found = (
        {f"out/pages/{p.name}": p.read_text() for p in sorted((root / "out/pages").iterdir())}
        if (root / "out/pages").is_dir()
        else {}
    )
    for rel in ("out/index.txt", "out/data.txt", "out/report.txt"):
        if (root / rel).exists():
            found[rel] = (root / rel).read_text()
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


class Daemon:
    """`stagewatch watch` in the soak folder, its JSON events counted as they come."""

    def __init__(self, root: Path, log: Path) -> None:
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []
        self.idle = threading.Event()
        self.log = open(log, "a", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stagewatch", "--log-format", "json", "watch"],
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
            # No controlling terminal (as under systemd): its SIGHUPs mean reload even when the
            # soak runs in a terminal, where a SIGHUP would be the terminal hanging up.
            start_new_session=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.write(line)
            try:
                event = json.loads(line)
            except ValueError:
                self.errors.append(line.rstrip())
                continue
            name = event.get("event", "")
            self.counts[name] = self.counts.get(name, 0) + 1
            if name == "daemon.internal_error" or "Traceback" in line:
                self.errors.append(line.rstrip())
            if name == "watch.idle":
                self.idle.set()
            elif name in ("stage.started", "watch.changed"):
                self.idle.clear()

    def end(self, sig: int) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self.reader.join(10)
        self.log.flush()
        return code


def editor_save(path: Path, text: str, rng: random.Random) -> str:
    """One save the way a real editor does it; returns its name."""
    style = rng.choice(["plain", "vim", "jetbrains", "replace", "truncate"])
    path.parent.mkdir(parents=True, exist_ok=True)
    if style == "vim" and path.exists():
        (path.parent / "4913").write_text("")
        (path.parent / "4913").unlink()
        backup = path.with_name(path.name + "~")
        os.replace(path, backup)
        path.write_text(text)
        backup.unlink()
    elif style == "jetbrains" and path.exists():
        tmp = path.with_name(path.name + "___jb_tmp___")
        old = path.with_name(path.name + "___jb_old___")
        tmp.write_text(text)
        os.replace(path, old)
        os.replace(tmp, path)
        old.unlink()
    elif style == "replace":
        tmp = path.with_name(f".{path.name}.tmp{rng.randrange(1 << 30)}")
        tmp.write_text(text)
        os.replace(tmp, path)
    elif style == "truncate" and path.exists():
        with open(path, "w") as handle:
            handle.flush()
            time.sleep(0.01)
            handle.write(text)
    else:
        path.write_text(text)
    return style


def setup(root: Path, debounce: str) -> None:
    (root / "stages").mkdir(parents=True)
    (root / "stages/__init__.py").write_text("")
    (root / "stages/index.py").write_text(INDEX)
    (root / "gen_pages.py").write_text(GEN_PAGES)
    (root / "sum_data.py").write_text(SUM_DATA)
    (root / "tpl").mkdir()
    (root / "tpl/header.txt").write_text("<header>\n")
    for index in range(20):
        folder = root / "content" / (f"part{index % 3}" if index % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"page{index}.md").write_text(f"page {index}\n")
    (root / "data").mkdir()
    for index in range(5):
        (root / "data" / f"d{index}.csv").write_text(f"{index},{index * 2}\n")
    (root / "stagewatch.toml").write_text(CONFIG.format(debounce="100ms"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the soak folder")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="stagewatch-soak-"))
    setup(root, "100ms")
    log = root / "soak-daemon.log"
    figures: dict[str, int] = {}
    kills: list[tuple[float, set[int]]] = []
    orphans: list[int] = []
    idle_after_s: list[float] = []

    def count(what: str) -> None:
        figures[what] = figures.get(what, 0) + 1

    daemon = Daemon(root, log)
    deadline = time.monotonic() + args.minutes * 60
    content = [p for p in (root / "content").rglob("*.md")]
    while time.monotonic() < deadline:
        roll = rng.random()
        if roll < 0.40:
            path = rng.choice(content) if content else root / "content/new0.md"
            count("save:" + editor_save(path, f"edit {rng.randrange(1000)}\n", rng))
        elif roll < 0.48:
            path = root / "content" / rng.choice(["", "part1", "fresh"]) / f"new{rng.randrange(50)}.md"
            editor_save(path, f"new page {rng.randrange(1000)}\n", rng)
            content = [p for p in (root / "content").rglob("*.md")]
            count("create")
        elif roll < 0.53 and len(content) > 5:
            victim = rng.choice(content)
            victim.unlink()
            content = [p for p in (root / "content").rglob("*.md")]
            count("delete")
        elif roll < 0.63:
            csv = root / "data" / f"d{rng.randrange(7)}.csv"
            editor_save(csv, f"{rng.randrange(100)},{rng.randrange(100)}\n", rng)
            count("data edit")
        elif roll < 0.66:
            for path in rng.sample(content, min(len(content), 10)):
                path.write_text(f"burst {rng.randrange(1000)}\n")
            count("burst")
        elif roll < 0.68:
            editor_save(root / "tpl/header.txt", f"<header {rng.randrange(100)}>\n", rng)
            count("template edit")
        elif roll < 0.70:
            (rng.choice(content) if content else root / "tpl/header.txt").touch()
            count("touch")
        elif roll < 0.72:
            debounce = rng.choice(["50ms", "100ms", "200ms"])
            (root / "stagewatch.toml").write_text(CONFIG.format(debounce=debounce))
            count("reload by save")
        elif roll < 0.73:
            daemon.proc.send_signal(signal.SIGHUP)
            count("SIGHUP")
        elif roll < 0.77:
            # kill -9 while stages run, when possible: their processes must not outlive it.
            running = (
                {int(p.name.split("-")[1]) for p in (root / "pids").glob("*")}
                if (root / "pids").exists()
                else set()
            )
            live = {pid for pid in running if alive(pid)}
            daemon.proc.kill()
            daemon.proc.wait(timeout=30)
            kills.append((time.monotonic(), live))
            count("kill -9" + (" mid-run" if live else ""))
            daemon = Daemon(root, log)
        elif roll < 0.79:
            code = daemon.end(signal.SIGTERM)
            count(f"SIGTERM (exit {code})")
            daemon = Daemon(root, log)
        time.sleep(rng.choice([0.0, 0.02, 0.05, 0.1, 0.3, 0.8]))
        for at, pids in list(kills):
            if time.monotonic() - at > 3.0:
                orphans += [pid for pid in pids if alive(pid)]
                kills.remove((at, pids))
    for _, pids in kills:
        deadline_kill = time.monotonic() + 3
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline_kill:
            time.sleep(0.05)
        orphans += [pid for pid in pids if alive(pid)]

    # The end: wait until every stage is fresh by its own key, then compare with what the
    # final inputs give.
    began = time.monotonic()
    settled = False
    while time.monotonic() - began < 120:
        status = subprocess.run(
            [sys.executable, "-m", "stagewatch", "status", "--json"],
            cwd=root, capture_output=True, text=True, env=ENV,
        )  # fmt: skip
        try:
            states = [row["state"] for row in json.loads(status.stdout)["stages"]]
        except (ValueError, KeyError):
            states = []
        if states and all(state == "fresh" for state in states) and daemon.idle.is_set():
            settled = True
            break
        time.sleep(0.2)
    idle_after_s.append(time.monotonic() - began)
    expected, actual = expected_outputs(root), actual_outputs(root)
    wrong = sorted(rel for rel in expected.keys() | actual.keys() if expected.get(rel) != actual.get(rel))
    code = daemon.end(signal.SIGTERM)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"soak: {args.minutes:g} min, seed {args.seed}, {machine}")
    for what, number in sorted(figures.items()):
        print(f"  {what:<26} {number:>6}")
    starts = sum(1 for line in log.read_text().splitlines() if '"stage.started"' in line)
    print(f"  {'stage runs':<26} {starts:>6}")
    print(f"  {'settled after the last change':<26} {statistics.median(idle_after_s):>6.1f} s")
    print(f"  {'outputs wrong':<26} {len(wrong):>6}  {', '.join(wrong[:5])}")
    print(f"  {'stage processes outliving kill -9':<26} {len(orphans):>6}")
    print(f"  {'internal errors':<26} {len(daemon.errors):>6}")
    print(f"  {'final SIGTERM exit':<26} {code:>6}")
    ok = settled and not wrong and not orphans and code == 0
    print("soak: " + ("passed" if ok else "FAILED") + f" (folder {root})")
    if ok and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
