"""Time a no-op `stagewatch build` on a generated tree, against make -r -q, a full rehash and doit.

    python bench/noop_build.py                       # 200 stages x 25 files x 64 KiB = 5,000 files
    python bench/noop_build.py --stages 40           # a 1,000-file tree
    python bench/noop_build.py --example             # the bundled example site

Prints medians (and min) of --runs runs, in milliseconds. doit is timed when it is installed
(pip install -e '.[bench]'). The tree is kept in bench/_work/ between runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# As on a user's machine: compiled bytecode is cached (some sandboxes turn that off).
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str], cwd: Path, runs: int, before: object = None) -> list[float]:
    times = []
    for _ in range(runs):
        if callable(before):
            before()
        start = time.perf_counter()
        proc = subprocess.run(
            argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        times.append((time.perf_counter() - start) * 1000)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return times


def report(label: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(f"  {label:<42} median {median:8.1f} ms   min {min(times):8.1f} ms   (n={len(times)})")
    return median


def make_tree(root: Path, stages: int, files: int, size: int) -> None:
    marker = root / ".complete"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    block = os.urandom(size)
    lines = ["[pipeline]", "jobs = 2", ""]
    make_rules = [".PHONY: all", "all: " + " ".join(f"out/s{s:03}.txt" for s in range(stages)), ""]
    dodo = ["def task_all():"]
    for s in range(stages):
        folder = root / "in" / f"s{s:03}"
        folder.mkdir(parents=True)
        for f in range(files):
            (folder / f"f{f:02}.bin").write_bytes(block[:-8] + s.to_bytes(4, "big") + f.to_bytes(4, "big"))
        lines += [
            "[[stage]]",
            f'name = "s{s:03}"',
            f'command = ["sh", "-c", "cat in/s{s:03}/* | wc -c > out/s{s:03}.txt"]',
            f'inputs = ["in/s{s:03}/"]',
            f'outputs = ["out/s{s:03}.txt"]',
            "",
        ]
        deps = " ".join(f"in/s{s:03}/f{f:02}.bin" for f in range(files))
        make_rules += [f"out/s{s:03}.txt: {deps}", f"\tcat in/s{s:03}/* | wc -c > $@", ""]
        dodo += [
            f"    yield {{'name': 's{s:03}',",
            f"           'file_dep': [f'in/s{s:03}/f{{f:02}}.bin' for f in range({files})],",
            f"           'targets': ['out/s{s:03}.txt'],",
            f"           'actions': ['cat in/s{s:03}/* | wc -c > out/s{s:03}.txt']}}",
        ]
    (root / "out").mkdir()
    (root / "stagewatch.toml").write_text("\n".join(lines))
    (root / "Makefile").write_text("\n".join(make_rules))
    (root / "dodo.py").write_text("\n".join(dodo) + "\n")
    marker.write_text("")


def bench_tree(args: argparse.Namespace) -> None:
    root = HERE / "_work" / f"tree-{args.stages}x{args.files}x{args.size}"
    make_tree(root, args.stages, args.files, args.size)
    total = args.stages * args.files
    print(
        f"tree: {args.stages} stages x {args.files} files x {args.size // 1024} KiB = {total} files, "
        f"{total * args.size / 2**20:.0f} MiB, in {root}"
    )
    stagewatch = [sys.executable, "-m", "stagewatch", "--config", "stagewatch.toml", "-q", "build"]
    first = timed(stagewatch, root, 1)
    print(f"  first build (runs every stage)             {first[0]:8.1f} ms")
    digests = root / "_build" / ".cache" / "digests.sqlite"
    results = {}
    results["python"] = report(
        "python -c pass (interpreter start)", timed([sys.executable, "-c", "pass"], root, args.runs)
    )
    results["noop"] = report("stagewatch build, no-op (warm stat cache)", timed(stagewatch, root, args.runs))
    results["rehash"] = report(
        "stagewatch build, no-op, rehashing everything",
        timed(stagewatch, root, max(3, args.runs // 3), digests.unlink),
    )
    subprocess.run(["make", "-r", "-s"], cwd=root, check=True, stdout=subprocess.DEVNULL)
    results["make"] = report("make -r -q", timed(["make", "-r", "-q"], root, args.runs))
    try:
        import doit  # noqa: F401
    except ImportError:
        print("  doit: not installed (pip install -e '.[bench]' to compare)")
    else:
        doit_cmd = [sys.executable, "-m", "doit", "run", "--verbosity", "0"]
        subprocess.run(doit_cmd, cwd=root, check=True, stdout=subprocess.DEVNULL)
        results["doit"] = report("doit (no-op)", timed(doit_cmd, root, max(3, args.runs // 3)))
    noop = results["noop"]
    print(
        f"  no-op build vs make -r -q: {noop / results['make']:.1f}x; "
        f"rehashing is {results['rehash'] / noop:.1f}x slower"
        + (f"; doit is {results['doit'] / noop:.1f}x slower" if "doit" in results else "")
    )


def bench_example(args: argparse.Namespace) -> None:
    work = HERE / "_work" / "example"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(
        REPO / "examples" / "site", work / "examples" / "site", ignore=shutil.ignore_patterns("_build")
    )
    shutil.copy(REPO / "config.example.toml", work / "config.example.toml")
    cmd = [sys.executable, "-m", "stagewatch", "--config", "config.example.toml", "-q", "build"]
    timed(cmd, work, 1)
    print("the bundled example (3 stages, 6 files):")
    report("python -c pass (interpreter start)", timed([sys.executable, "-c", "pass"], work, args.runs))
    report("stagewatch build, no-op", timed(cmd, work, args.runs))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stages", type=int, default=200)
    parser.add_argument("--files", type=int, default=25)
    parser.add_argument("--size", type=int, default=64 * 1024, help="bytes per file")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--example", action="store_true", help="time the bundled example instead")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}")
    bench_example(args) if args.example else bench_tree(args)


if __name__ == "__main__":
    main()
