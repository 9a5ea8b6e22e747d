"""Measure stagewatch against DESIGN §9 and print one table: medians (min, max) and ratios measured
side by side in one run, headed by the machine, then each target with ✓ or ✗, then the same in Markdown.

    python bench/table.py                          # everything, 7 runs a figure (8-10 min on 2 cores)
    python bench/table.py --quick                  # 3 runs, a 20,000-file catch-up, 3 s of idling
    python bench/table.py --sections noop,scaling  # only these sections
    python bench/table.py --runs 11                # more runs a figure

Sections:
  noop     no-op `build` of 200 stages x 25 files x 64 KiB (5,000 files, 320 MiB) in two shapes:
           A, folder inputs + commands; B, module stages + glob inputs. Against `make -r -q` on an
           equivalent Makefile, a full rehash (stagewatch without its digest cache; sha256sum), and
           a no-op doit on an equivalent dodo.py; `python -c pass` is the interpreter's floor.
  change   the same after one input file changed (rewritten before each run: one stage reruns).
  scaling  `check` and no-op `build` at 200, 1,000 and 2,000 glob stages of 5 small files.
  daemon   `watch`: start to idle on the built 5,000-file tree (shape B) and on 2,000 stages; a
           SIGHUP reload of 2,000 stages; edit-to-stage-start latency; a 2,000-file burst; idle CPU
           and memory at 5,000 and 50,000 watched files.
  catchup  the largest gap between WATCHDOG=1 pings during a cold catch-up of 100,000 files
           (1,000 stages x 100 files; never built, no digest cache), and how long it takes.

Needs make, sha256sum and doit (pip install -e '.[bench]'). Work trees are written to
bench/_work/ once (1.5 GB; a few minutes more the first time) and reused while their recipe
is unchanged. The Markdown table is also written to bench/_work/table.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import (
    BIG_FILES,
    BIG_STAGES,
    DEBOUNCE_S,
    STAGEWATCH,
    WORK,
    Daemon,
    Table,
    Timed,
    ensure_built,
    folder_tree,
    glob_tree,
    interleaved,
    load,
    machine,
    module_input,
    module_tree,
    remove_build,
    render_markdown,
    render_text,
    stagewatch_build,
    stamp_s,
)

SECTIONS = ("noop", "change", "scaling", "daemon", "catchup")
SCALES = (200, 1000, 2000)
WATCHDOG_USEC = 1_000_000  # pings every 0.5 s: a gap over 1 s means the loop was held ~0.5 s or more
BOOT = time.monotonic()


@dataclass
class Settings:
    runs: int
    edits: int
    idle_s: float
    catchup_stages: int
    catchup_files: int
    catchup_runs: int


def progress(text: str) -> None:
    print(f"[{time.monotonic() - BOOT:6.0f} s] {text}", file=sys.stderr, flush=True)


# --- one-shot commands ---


def doit_run(root: Path) -> Timed:
    return Timed([sys.executable, "-m", "doit", "run", "--verbosity", "0"], root)


def make_run(root: Path, *flags: str) -> Timed:
    return Timed(["make", "-r", *flags, f"PYTHON={sys.executable}"], root)


def input_files(root: Path, folder: str) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in (root / folder).rglob("*") if path.is_file())


def forget_digests(root: Path) -> Callable[[], None]:
    def forget() -> None:
        for path in (root / "_build" / ".cache").glob("digests.sqlite*"):
            path.unlink()

    return forget


class Rewriter:
    """Rewrites one input with new bytes (same size) each call: exactly one stage is stale after it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0

    def __call__(self) -> None:
        self.count += 1
        data = self.path.read_bytes()
        self.path.write_bytes(data[:-16] + b"%015d\n" % self.count)


def shapes() -> list[tuple[str, Path, str, str]]:
    """(label, tree, folder of its inputs, the one input the change section rewrites)."""
    return [
        ("A folders+commands", folder_tree(), "in", "in/s0000/f00.bin"),
        ("B modules+globs", module_tree(), "content", module_input(0, 0)),
    ]


def section_noop(table: Table, figures: dict[str, float], settings: Settings) -> None:
    for label, root, inputs, _ in shapes():
        progress(f"noop, shape {label}: first builds")
        ensure_built(root)
        make_run(root, "-s")  # built by each tool once, untimed
        for cmd in (make_run(root, "-s"), doit_run(root)):
            interleaved({"build": cmd}, 0, warmup=True)
        commands = {
            "stagewatch": stagewatch_build(root),
            "make": make_run(root, "-q"),
            "rehash": Timed(stagewatch_build(root).argv, root, before=forget_digests(root)),
            "sha256sum": Timed(["sha256sum", *input_files(root, inputs)], root),
            "doit": doit_run(root),
            "python": Timed([sys.executable, "-c", "pass"], root),
        }
        progress(f"noop, shape {label}: {settings.runs} rounds of {', '.join(commands)}")
        times = interleaved(commands, settings.runs)
        section = f"1. no-op build, shape {label}, 5,000 files"
        rows = {
            "stagewatch": table.add(section, "stagewatch build (warm stat cache)", times["stagewatch"]),
            "make": table.add(section, "make -r -q", times["make"]),
            "rehash": table.add(section, "stagewatch build, digest cache removed", times["rehash"]),
            "sha256sum": table.add(section, "sha256sum of every input", times["sha256sum"]),
            "doit": table.add(section, "doit run (no-op)", times["doit"]),
            "python": table.add(section, "python -c pass (floor)", times["python"]),
        }
        sw = rows["stagewatch"]
        key = label[0]
        figures[f"noop_{key}_s"] = sw.median
        figures[f"noop_{key}_vs_make"] = table.ratio(section, "stagewatch / make", sw, rows["make"]).median
        figures[f"noop_{key}_rehash_vs"] = table.ratio(
            section, "rehash / stagewatch", rows["rehash"], sw
        ).median
        table.ratio(section, "sha256sum / stagewatch", rows["sha256sum"], sw)
        figures[f"noop_{key}_doit_vs"] = table.ratio(section, "doit / stagewatch", rows["doit"], sw).median


def section_change(table: Table, figures: dict[str, float], settings: Settings) -> None:
    for label, root, _, changed in shapes():
        progress(f"change, shape {label}: {settings.runs} rounds")
        rewrite = Rewriter(root / changed)
        commands = {
            "stagewatch": Timed(stagewatch_build(root).argv, root, before=rewrite),
            "make": Timed(make_run(root, "-s").argv, root, before=rewrite),
            "doit": Timed(doit_run(root).argv, root, before=rewrite),
        }
        times = interleaved(commands, settings.runs)
        section = f"2. build after one input changed (one stage reruns), shape {label}"
        sw = table.add(section, "stagewatch build", times["stagewatch"])
        make = table.add(section, "make -r", times["make"])
        doit = table.add(section, "doit run", times["doit"])
        figures[f"change_{label[0]}_vs_make"] = table.ratio(section, "stagewatch / make", sw, make).median
        table.ratio(section, "doit / stagewatch", doit, sw)


def section_scaling(table: Table, figures: dict[str, float], settings: Settings) -> None:
    commands: dict[str, Timed] = {}
    for stages in SCALES:
        root = glob_tree(stages, 5)
        progress(f"scaling: building {stages} glob stages (untimed)")
        ensure_built(root)
        commands[f"check {stages}"] = Timed([*STAGEWATCH, "-q", "check"], root)
        commands[f"build {stages}"] = stagewatch_build(root)
    progress(f"scaling: {settings.runs} rounds of {', '.join(commands)}")
    times = interleaved(commands, settings.runs)
    section = "3. scaling: glob stages of 5 small files"
    for what in ("check", "build"):
        rows = {
            n: table.add(section, f"stagewatch {what}, {n:,} stages", times[f"{what} {n}"]) for n in SCALES
        }
        figures[f"{what}_2000_s"] = rows[2000].median
        figures[f"{what}_linear"] = table.ratio(section, f"{what}: 2,000 / 200", rows[2000], rows[200]).median


# --- the daemon ---


def idle_figures(daemon: Daemon, idle_s: float) -> tuple[float, float, float]:
    """(CPU % over idle_s, from a second after idle, VmRSS MiB, VmHWM MiB)."""
    # Measuring idleness: nothing to wait for but time. The first second after idle is left out
    # (the digest cache is saved then: once per round, not idling).
    time.sleep(1.0)
    cpu_before, wall_before = daemon.stats()[0], time.monotonic()
    time.sleep(idle_s)
    cpu_after, rss, hwm = daemon.stats()
    return (cpu_after - cpu_before) / (time.monotonic() - wall_before) * 100, rss, hwm


def start_to_idle(
    root: Path, runs: int, then: Callable[[Daemon], None] | None = None
) -> tuple[list[float], list[float]]:
    """Seconds from spawning `watch` on a built tree to READY=1, and to its `watch.idle` event;
    `then` is given the last run's daemon, idle, before it stops."""
    ready_s: list[float] = []
    idle_s: list[float] = []
    for run in range(runs):
        with Daemon(root) as daemon:
            idle = daemon.wait_event("watch.idle", timeout_s=300)
            ready = daemon.wait_note("READY=1")
            ran = sum(1 for _, e in daemon.events[:idle] if e.get("event") == "stage.started")
            if ran:
                progress(f"  note: {ran} stage(s) ran while starting in {root.name} (not a built tree?)")
            ready_s.append(daemon.notes[ready][0] - daemon.spawned)
            idle_s.append(daemon.events[idle][0] - daemon.spawned)
            if then is not None and run == runs - 1:
                then(daemon)
    return ready_s, idle_s


def measure_reloads(daemon: Daemon, runs: int) -> tuple[list[float], list[float]]:
    """SIGHUP with the file unchanged: signal -> READY=1 after RELOADING=1; then an edit of the
    pipeline file (debounce toggled, so the pipeline differs): write -> READY=1 after RELOADING=1."""
    config = daemon.root / "stagewatch.toml"
    original = config.read_text()
    hup: list[float] = []
    edit: list[float] = []
    try:
        for _ in range(runs):
            mark = len(daemon.notes)
            sent = time.monotonic()
            os.kill(daemon.proc.pid, signal.SIGHUP)
            reloading = daemon.wait_note("RELOADING=1", mark)
            hup.append(daemon.notes[daemon.wait_note("READY=1", reloading)][0] - sent)
        for run in range(runs):
            mark = len(daemon.notes)
            text = original if run % 2 else original.replace('debounce = "100ms"', 'debounce = "99ms"')
            written = time.monotonic()
            config.write_text(text)
            reloading = daemon.wait_note("RELOADING=1", mark)
            edit.append(daemon.notes[daemon.wait_note("READY=1", reloading)][0] - written)
            time.sleep(0.3)  # the same file seen twice (write, close) may ask for a second read: let it pass
    finally:
        config.write_text(original)
    return hup, edit


def measure_latency(daemon: Daemon, edits: int) -> list[float]:
    """Seconds from writing an input (new bytes) to its stage's `stage.started` timestamp."""
    latencies = []
    mark = daemon.wait_event("watch.idle") + 1
    for edit in range(edits):
        stage = edit % BIG_STAGES
        path = daemon.root / module_input(stage, edit % BIG_FILES)
        data = path.read_bytes()
        written = time.time()
        path.write_bytes(data[:-16] + b"%015d\n" % (time.time_ns() % 10**15))
        started = daemon.wait_event("stage.started", mark, stage=f"s{stage:04}")
        latencies.append(stamp_s(daemon.events[started][1]) - written)
        mark = daemon.wait_event("watch.idle", started) + 1
    return latencies


def measure_burst(daemon: Daemon, stages: int = 80, per_stage: int = 25) -> tuple[int, float]:
    """A `git checkout`-like burst: stages x per_stage new files written at once. Returns the most
    runs any one stage had, and the seconds from the first write to idle."""
    mark = len(daemon.events)
    began = time.monotonic()
    written = []
    for s in range(stages):
        for n in range(per_stage):
            path = daemon.root / "content" / f"s{s:04}" / "part0" / f"burst{n:02}.md"
            path.write_text(f"burst {s} {n}\n")
            written.append(path)
    first = daemon.wait_event("stage.started", mark)
    idle = daemon.wait_event("watch.idle", first, timeout_s=300)
    settled_s = daemon.events[idle][0] - began
    time.sleep(2.5)  # longer than the debounce cap: a late second round would have begun by now
    daemon.wait_event("watch.idle", idle)
    runs = Counter(
        str(event.get("stage")) for _, event in daemon.events[mark:] if event.get("event") == "stage.started"
    )
    for path in written:  # put the tree back as it was; the stages run once more
        path.unlink()
    after = len(daemon.events)
    daemon.wait_event("watch.idle", daemon.wait_event("stage.started", after), timeout_s=300)
    return max(runs.values()), settled_s


def section_daemon(table: Table, figures: dict[str, float], settings: Settings) -> None:
    shape_b, big = module_tree(), glob_tree(2000, 5)
    progress("daemon: bringing the trees up to date (untimed)")
    ensure_built(shape_b)
    ensure_built(big)
    section = "4. daemon (watch)"
    runs = settings.runs

    progress(f"daemon: {runs} starts on the 5,000-file tree; latency, burst and idle on the last")
    latency: list[float] = []
    burst: list[tuple[int, float]] = []
    idling: list[tuple[float, float, float]] = []

    def on_shape_b(daemon: Daemon) -> None:
        progress(f"daemon: {settings.edits} edits")
        latency.extend(measure_latency(daemon, settings.edits))
        progress("daemon: a 2,000-file burst")
        burst.append(measure_burst(daemon))
        progress(f"daemon: idling {settings.idle_s:.0f} s with 5,000 files watched")
        idling.append(idle_figures(daemon, settings.idle_s))

    ready, idle = start_to_idle(shape_b, runs, on_shape_b)
    table.add(section, "start -> READY=1, 5,000 files (shape B)", ready)
    figures["start_5k_s"] = table.add(section, "start -> watch.idle, 5,000 files (shape B)", idle).median

    progress(f"daemon: {runs} starts on 2,000 stages; reloads on the last")
    reloads: dict[str, list[float]] = {}

    def on_big(daemon: Daemon) -> None:
        reloads["hup"], reloads["edit"] = measure_reloads(daemon, runs)

    ready, idle = start_to_idle(big, runs, on_big)
    table.add(section, "start -> READY=1, 2,000 stages", ready)
    figures["start_2k_s"] = table.add(section, "start -> watch.idle, 2,000 stages", idle).median
    figures["reload_s"] = table.add(
        section, "SIGHUP reload, 2,000 stages (-> READY=1)", reloads["hup"], note="file unchanged"
    ).median
    table.add(
        section,
        "pipeline file edited -> READY=1, 2,000 stages",
        reloads["edit"],
        note=f"includes the {DEBOUNCE_S * 1000:.0f} ms debounce",
    )

    row = table.add(section, "edit -> stage.started", latency, note=f"debounce {DEBOUNCE_S * 1000:.0f} ms")
    figures["latency_s"] = row.median
    table.add(section, "edit -> stage.started, minus debounce", [v - DEBOUNCE_S for v in latency])
    most_runs, burst_s = burst[0]
    figures["burst_runs"] = table.add(
        section, "2,000-file burst over 80 stages: most runs of a stage", [most_runs], unit="runs"
    ).median
    table.add(section, "2,000-file burst: first write -> idle", [burst_s])
    cpu, rss, hwm = idling[0]
    figures["cpu_5k"] = table.add(
        section, "idle CPU, 5,000 files", [cpu], unit="%", note=f"over {settings.idle_s:.0f} s"
    ).median
    table.add(section, "VmRSS / VmHWM, 5,000 files", [rss], unit="MiB", note=f"peak {hwm:.1f} MiB")

    many = glob_tree(500, 100)
    progress("daemon: 50,000 files (500 stages x 100), bringing it up to date (untimed)")
    ensure_built(many)
    with Daemon(many) as daemon:
        idle_at = daemon.events[daemon.wait_event("watch.idle", timeout_s=600)][0]
        table.add(section, "start -> watch.idle, 50,000 files (500 stages)", [idle_at - daemon.spawned])
        progress(f"daemon: idling {settings.idle_s:.0f} s with 50,000 files watched")
        cpu, rss, hwm = idle_figures(daemon, settings.idle_s)
    figures["cpu_50k"] = table.add(
        section, "idle CPU, 50,000 files", [cpu], unit="%", note=f"over {settings.idle_s:.0f} s"
    ).median
    figures["rss_50k"] = table.add(
        section, "VmRSS / VmHWM, 50,000 files", [rss], unit="MiB", note=f"peak {hwm:.1f} MiB"
    ).median


def section_catchup(table: Table, figures: dict[str, float], settings: Settings) -> None:
    stages, files = settings.catchup_stages, settings.catchup_files
    root = glob_tree(stages, files)
    total = stages * files
    section = f"5. cold catch-up of {total:,} files ({stages:,} stages x {files}), WATCHDOG_USEC=1 s"
    gaps: list[float] = []
    durations: list[float] = []
    peaks: list[float] = []
    counts: list[int] = []
    for run in range(settings.catchup_runs):
        remove_build(root)
        progress(f"catchup: run {run + 1} of {settings.catchup_runs}, {total:,} files, never built")
        with Daemon(root, watchdog_usec=WATCHDOG_USEC) as daemon:
            idle = daemon.wait_event("watch.idle", timeout_s=1200)
            idle_at = daemon.events[idle][0]
            pings = [at for at, text in daemon.notes if text == "WATCHDOG=1" and at <= idle_at]
            ends = [*pings, idle_at]  # the stretch from the last ping to idle counts too
            gaps.append(max((b - a for a, b in itertools.pairwise(ends)), default=0.0))
            durations.append(idle_at - daemon.spawned)
            peaks.append(daemon.stats()[2])
            counts.append(len(pings))
    figures["ping_gap_s"] = table.add(
        section,
        "largest gap between WATCHDOG=1 pings",
        gaps,
        note=f"pings due every 0.5 s; {'-'.join(sorted({str(min(counts)), str(max(counts))}))} pings a run",
    ).median
    table.add(section, "catch-up: start -> watch.idle", durations)
    table.add(section, "VmHWM after the catch-up", peaks, unit="MiB")
    figures["ping_gap_max_s"] = max(gaps)


# --- the targets ---


def targets(figures: dict[str, float]) -> list[tuple[str, str, bool]]:
    """DESIGN §9's targets met by the sections run: (target, the figure measured, met?)."""
    budget = DEBOUNCE_S + 0.030
    wanted: list[tuple[str, str, str, Callable[[float], bool]]] = []  # (target, figure, format, test)
    for shape in "AB":
        wanted += [
            (
                f"shape {shape}: no-op build ≤ 4x make -r -q",
                f"noop_{shape}_vs_make",
                "{:.1f}x",
                lambda v: v <= 4,
            ),
            (
                f"shape {shape}: ≥ 3x faster than a rehash",
                f"noop_{shape}_rehash_vs",
                "{:.1f}x",
                lambda v: v >= 3,
            ),
            (f"shape {shape}: ≥ 3x faster than doit", f"noop_{shape}_doit_vs", "{:.1f}x", lambda v: v >= 3),
        ]
    wanted += [
        ("check ≤ 0.5 s at 2,000 glob stages", "check_2000_s", "{:.2f} s", lambda v: v <= 0.5),
        ("no-op build ≤ 1 s at 2,000 glob stages", "build_2000_s", "{:.2f} s", lambda v: v <= 1),
        ("check: 2,000-time ≤ 12x 200-time", "check_linear", "{:.1f}x", lambda v: v <= 12),
        ("no-op build: 2,000-time ≤ 12x 200-time", "build_linear", "{:.1f}x", lambda v: v <= 12),
        ("start to idle ≤ 0.5 s (5,000 files)", "start_5k_s", "{:.2f} s", lambda v: v <= 0.5),
        ("start to idle ≤ 2 s (2,000 stages)", "start_2k_s", "{:.2f} s", lambda v: v <= 2),
        ("reload ≤ 0.5 s (2,000 stages)", "reload_s", "{:.2f} s", lambda v: v <= 0.5),
        (
            "WATCHDOG pings ≤ 1 s apart in a cold catch-up (worst run)",
            "ping_gap_max_s",
            "{:.2f} s",
            lambda v: v <= 1,
        ),
        (
            f"edit -> start ≤ debounce + 30 ms ({budget * 1000:.0f} ms), median",
            "latency_s",
            "{:.3f} s",
            lambda v: v <= budget,
        ),
        ("one run per stage for a 2,000-file burst", "burst_runs", "{:.0f}", lambda v: v == 1),
        ("idle CPU < 0.5 % (5,000 files)", "cpu_5k", "{:.2f} %", lambda v: v < 0.5),
        ("idle CPU < 0.5 % (50,000 files)", "cpu_50k", "{:.2f} %", lambda v: v < 0.5),
        ("resident memory < 80 MiB at 50,000 files", "rss_50k", "{:.1f} MiB", lambda v: v < 80),
    ]
    return [
        (text, shown.format(figures[key]), test(figures[key]))
        for text, key, shown, test in wanted
        if key in figures
    ]


def render_targets(rows: list[tuple[str, str, bool]], markdown: bool) -> str:
    if markdown:
        lines = ["| target (DESIGN §9) | measured | met |", "| --- | ---: | :---: |"]
        lines += [f"| {text} | {value} | {'✓' if ok else '✗'} |" for text, value, ok in rows]
        return "\n".join(lines)
    width = max((len(text) for text, _, _ in rows), default=0)
    return "\n".join(f"  {'✓' if ok else '✗'} {text.ljust(width)}  {value}" for text, value, ok in rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 runs a figure, a smaller catch-up, 3 s idle")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, of: {', '.join(SECTIONS)}"
    )
    parser.add_argument("--runs", type=int, help="runs a figure (default 7; --quick: 3)")
    parser.add_argument("--edits", type=int, help="edits for the latency figure (default 21; --quick: 10)")
    parser.add_argument("--idle-s", type=float, help="seconds of idling for CPU (default 10; --quick: 3)")
    parser.add_argument("--catchup-runs", type=int, help="cold catch-ups (default 3; --quick: 1)")
    args = parser.parse_args()
    wanted = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section {', '.join(unknown)} (the sections: {', '.join(SECTIONS)})")
    if {"noop", "change"} & set(wanted) and importlib.util.find_spec("doit") is None:
        parser.error("doit is not installed: pip install -e '.[bench]'")
    quick = args.quick
    settings = Settings(
        runs=args.runs or (3 if quick else 7),
        edits=args.edits or (10 if quick else 21),
        idle_s=args.idle_s or (3.0 if quick else 10.0),
        catchup_stages=200 if quick else 1000,
        catchup_files=100,
        catchup_runs=args.catchup_runs or (1 if quick else 3),
    )
    host = machine()
    table = Table()
    figures: dict[str, float] = {}
    steps = {
        "noop": section_noop,
        "change": section_change,
        "scaling": section_scaling,
        "daemon": section_daemon,
        "catchup": section_catchup,
    }
    for name in SECTIONS:
        if name in wanted:
            steps[name](table, figures, settings)
    took = time.monotonic() - BOOT
    host.append(("load, end", load()))
    head = "\n".join(f"  {key:<12} {value}" for key, value in host)
    checks = targets(figures)
    print(f"\nmachine\n{head}\n  {'run':<12} {took / 60:.1f} min, sections {', '.join(wanted)}\n")
    print(render_text(table))
    print("\ntargets (DESIGN §9)\n" + render_targets(checks, markdown=False))
    summary = ", ".join(
        f"{key} {value}" for key, value in host if key not in ("make", "doit", "stagewatch", "load, end")
    )
    markdown = "\n\n".join(
        [
            f"Measured with `python bench/table.py` ({took / 60:.0f} min) on: {summary}.",
            render_markdown(table),
            render_targets(checks, markdown=True),
        ]
    )
    (WORK / "table.md").write_text(markdown + "\n")
    print(f"\nMarkdown (also in {WORK / 'table.md'}):\n\n{markdown}")


if __name__ == "__main__":
    main()
