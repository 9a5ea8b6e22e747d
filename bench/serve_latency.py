"""Measure the live preview: from a save to the open page showing it, in a real browser.

    python bench/serve_latency.py              # 20 saves of a page of the bundled example
    python bench/serve_latency.py --saves 50

Runs `stagewatch serve` on a copy of the bundled example (debounce 100 ms), opens one of its
pages in Chromium (/usr/bin/chromium, driven by Playwright), then saves the page's markdown
again and again. Each latency is from just before the write to the moment the reloaded page's
DOM was ready (`performance.timeOrigin + DOMContentLoaded`), both wall-clock on this machine:
it holds the debounce, the page's instance and `index` runs, the round settling, the reload and the
request. Also prints the pip-installed size of what `serve` added (aiohttp and its dependencies).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]  # fmt: skip
FOLLOWED = "window.__stagewatch && window.__stagewatch.followed === true"
SHOWN_AT = """
document.addEventListener("DOMContentLoaded", () => {
  window.shownAt = performance.timeOrigin + performance.now();
});
"""
SERVE_DEPENDENCIES = ("aiohttp", "aiohappyeyeballs", "aiosignal", "attrs", "frozenlist", "multidict",
                      "propcache", "yarl", "idna", "typing_extensions")  # fmt: skip


def start_serve(work: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "stagewatch", "--config", "config.example.toml", "--log-format", "json",
           "serve", "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "serve.listening":
            url = event["url"]
        if event.get("event") == "watch.idle":
            break
    assert url is not None, "serve never listened"
    # Keep reading, so the pipe never fills.
    threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True).start()
    return proc, url


def installed_size(name: str) -> int | None:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    total = 0
    for file in dist.files or ():
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def report_sizes() -> None:
    print("what `serve` adds, as pip installed it (files of each distribution):")
    total = 0
    for name in SERVE_DEPENDENCIES:
        size = installed_size(name)
        if size is None:
            continue
        total += size
        print(f"  {name:<18} {metadata.version(name):<10} {size / 2**20:6.2f} MiB")
    print(f"  {'in all':<29} {total / 2**20:6.2f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--saves", type=int, default=20)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    work = HERE / "_work" / "serve"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(
        REPO / "examples" / "site", work / "examples" / "site", ignore=shutil.ignore_patterns("_build")
    )
    shutil.copy(REPO / "config.example.toml", work / "config.example.toml")
    page_source = work / "examples" / "site" / "content" / "hello.md"
    original = page_source.read_text(encoding="utf-8")
    proc, url = start_serve(work)
    latencies = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            context = browser.new_context()
            context.add_init_script(SHOWN_AT)
            page = context.new_page()
            page.goto(url + "pages/hello.html")
            for index in range(args.saves):
                page.wait_for_function(FOLLOWED, timeout=20_000)
                marker = f"save-{index}-{time.monotonic_ns()}"
                saved_at = time.time() * 1000
                page_source.write_text(f"{original}\n{marker}\n", encoding="utf-8")
                page.wait_for_function(f"document.body.innerText.includes({marker!r})", timeout=20_000)
                latencies.append(page.evaluate("window.shownAt") - saved_at)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    latencies.sort()
    print(f"save -> page shows it, {len(latencies)} saves (debounce 100 ms, pages + index run):")
    print(f"  median {statistics.median(latencies):6.0f} ms")
    print(f"  min    {latencies[0]:6.0f} ms")
    print(f"  p90    {latencies[int(len(latencies) * 0.9) - 1]:6.0f} ms")
    print(f"  max    {latencies[-1]:6.0f} ms")
    report_sizes()


if __name__ == "__main__":
    main()
