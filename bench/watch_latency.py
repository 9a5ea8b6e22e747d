"""Measure the daemon: edit-to-stage-start latency, runs for a burst, idle CPU and memory.

    python bench/watch_latency.py                # 50 edits, a 2,000-file burst, 10 s idle
    python bench/watch_latency.py --edits 200

Latency is from the moment a file is written to the `stage.started` event's timestamp
(both wall-clock on this machine), so it includes the debounce quiet time (100 ms here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = """
[pipeline]
debounce = "100ms"

[[stage]]
name = "pages"
command = ["sh", "-c", "ls content | wc -l > out.txt"]
inputs = ["content/**/*.md"]
outputs = ["out.txt"]
"""
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


class Daemon:
    def __init__(self, root: Path) -> None:
        self.events: list[dict[str, object]] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stagewatch", "--log-format", "json", "watch"],
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.events.append(json.loads(line))
                self.cond.notify_all()

    def wait(self, name: str, since: int, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for index in range(since, len(self.events)):
                    if self.events[index].get("event") == name:
                        return index
                if time.monotonic() > deadline:
                    raise SystemExit(f"no {name} within {timeout}s")
                self.cond.wait(0.1)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def stamp(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--files", type=int, default=5000, help="files watched for the idle/memory figures")
    parser.add_argument("--idle-s", type=float, default=10.0)
    args = parser.parse_args()
    root = HERE / "_work" / "latency"
    shutil.rmtree(root, ignore_errors=True)
    (root / "content").mkdir(parents=True)
    for number in range(10):
        (root / "content" / f"page{number}.md").write_text(f"page {number}\n")
    (root / "stagewatch.toml").write_text(CONFIG)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    daemon = Daemon(root)
    try:
        mark = daemon.wait("watch.idle", 0) + 1
        latencies = []
        for edit in range(args.edits):
            target = root / "content" / f"page{edit % 10}.md"
            written = time.time()
            target.write_text(f"edit {edit}\n")
            started = daemon.wait("stage.started", mark)
            latencies.append((stamp(daemon.events[started]) - written) * 1000)
            mark = daemon.wait("watch.idle", started) + 1
        print(
            f"edit -> stage start, {args.edits} edits: median {statistics.median(latencies):.0f} ms,"
            f" worst {max(latencies):.0f} ms (debounce 100 ms included)"
        )

        burst = root / "content" / "burst"
        burst.mkdir()
        began = time.monotonic()
        for number in range(args.burst):
            (burst / f"b{number:04}.md").write_text(f"{number}\n")
        written_s = time.monotonic() - began
        first = daemon.wait("stage.started", mark)
        mark = daemon.wait("watch.idle", first) + 1
        # Let anything late arrive, then count: a later run would show up as another start.
        (root / "content" / "page0.md").write_text("after the burst\n")
        after = daemon.wait("stage.started", mark)
        runs = sum(1 for e in daemon.events[first:after] if e.get("event") == "stage.started")
        print(f"{args.burst}-file burst written in {written_s:.2f} s: {runs} run(s) of the stage")
        daemon.wait("watch.idle", after)

        extra = root / "content" / "many"
        for number in range(args.files):
            folder = extra / f"d{number // 100:03}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f{number}.md").write_text("x\n")
        mark = len(daemon.events)
        daemon.wait("watch.idle", mark, timeout=120)
        cpu_before, wall_before = daemon.cpu_s(), time.monotonic()
        time.sleep(args.idle_s)  # measuring idleness: nothing to wait for but time
        cpu = (daemon.cpu_s() - cpu_before) / (time.monotonic() - wall_before) * 100
        print(
            f"idle with {args.files + args.burst + 10} files watched: CPU {cpu:.2f} %,"
            f" resident memory {daemon.rss_mib():.0f} MiB"
        )
    finally:
        daemon.proc.terminate()
        daemon.proc.wait(timeout=30)


if __name__ == "__main__":
    main()
