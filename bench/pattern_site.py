"""A site of real markdown pages, rendered with Python-Markdown and a Jinja2 template, built two
ways side by side: one `pages` stage that renders every page, and a `page` pattern stage (an
instance per page), each with an index over the pages folder.

    python bench/pattern_site.py                  # 1,000 pages, 3 runs of each figure
    python bench/pattern_site.py --pages 100 --runs 5

Prints, for each shape: a cold build (no _build/), a no-op build, a save of one page followed
by a build (save -> its stages done), and how many processes the cold build started for the
pages (one `stage.started` per run). Medians, with the machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from common import STAGEWATCH, WORK, machine

ONE_STAGE = """
[[stage]]
name = "pages"
module = "pipeline.pages"
inputs = ["content/**/*.md"]
sources = ["templates/**"]
outputs = ["_build/site/pages/"]

[[stage]]
name = "index"
module = "pipeline.index"
inputs = ["_build/site/pages/"]
outputs = ["_build/site/index.html"]
"""

PATTERN = """
[[stage]]
name = "page"
module = "pipeline.page"
inputs = ["content/{page}.md"]
sources = ["templates/**"]
outputs = ["_build/site/pages/{page}.html"]

[[stage]]
name = "index"
module = "pipeline.index"
inputs = ["_build/site/pages/"]
outputs = ["_build/site/index.html"]
"""

RENDER = """
from pathlib import Path

import jinja2
import markdown


def render(output_dir: Path, page: str) -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(output_dir / "templates"), autoescape=False)
    source = (output_dir / "content" / f"{page}.md").read_text(encoding="utf-8")
    body = markdown.markdown(source, extensions=["tables", "fenced_code", "toc"])
    target = output_dir / "_build" / "site" / "pages" / f"{page}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(env.get_template("page.html").render(title=page, body=body), encoding="utf-8")
"""

MODULES = {
    "pipeline/__init__.py": "",
    "pipeline/render.py": RENDER,
    "pipeline/page.py": "from pipeline.render import render\n\n\ndef run(output_dir, page):\n"
    "    render(output_dir, page)\n",
    "pipeline/pages.py": "from pipeline.render import render\n\n\ndef run(output_dir):\n"
    "    for source in sorted((output_dir / 'content').rglob('*.md')):\n"
    "        render(output_dir, source.relative_to(output_dir / 'content').with_suffix('').as_posix())\n",
    "pipeline/index.py": "def run(output_dir):\n"
    "    pages = output_dir / '_build' / 'site' / 'pages'\n"
    "    links = [f'<li><a href=\"pages/{p.relative_to(pages).as_posix()}\">{p.stem}</a></li>'\n"
    "             for p in sorted(pages.rglob('*.html'))]\n"
    "    (output_dir / '_build' / 'site' / 'index.html').write_text('<ul>' + ''.join(links) + '</ul>')\n",
    "templates/page.html": "<!doctype html><html><head><title>{{ title }}</title></head>"
    "<body><main>{{ body }}</main></body></html>\n",
}


def chapter(number: int) -> str:
    """A page as a book's chapter looks: headings, paragraphs, a list, a table, code."""
    paragraph = (
        f"Chapter {number} goes on about *builds* and **caches**, with `inline code` and a"
        " [link](https://example.org). " * 6
    )
    return textwrap.dedent(f"""\
        # Chapter {number}

        {paragraph}

        ## A list

        - first point of chapter {number}
        - second point, with *emphasis*
        - third point

        | key | value |
        |-----|-------|
        | a   | {number} |
        | b   | {number * 2} |

        ```python
        def chapter_{number}():
            return {number}
        ```

        {paragraph}
        """)


def make_site(root: Path, config: str, pages: int) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for rel, text in MODULES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    for number in range(pages):
        path = root / "content" / f"part{number % 10}" / f"chapter{number}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(chapter(number), encoding="utf-8")
    (root / "stagewatch.toml").write_text(config, encoding="utf-8")


def build(root: Path) -> tuple[float, int]:
    """Seconds a `build` takes, and how many runs it started."""
    start = time.perf_counter()
    done = subprocess.run(
        [*STAGEWATCH, "--log-format", "json", "build"], cwd=root, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"build in {root} failed: {done.stdout[-800:]}{done.stderr[-800:]}")
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return elapsed, sum(1 for event in events if event.get("event") == "stage.started")


def measure(root: Path, runs: int) -> dict[str, float]:
    cold, noop, save = [], [], []
    started = 0
    for _ in range(runs):
        shutil.rmtree(root / "_build", ignore_errors=True)
        seconds, started = build(root)
        cold.append(seconds)
        noop.append(build(root)[0])
        page = root / "content" / "part3" / "chapter3.md"
        page.write_text(page.read_text(encoding="utf-8") + "\nOne more line.\n", encoding="utf-8")
        save.append(build(root)[0])
    return {
        "cold build s": statistics.median(cold),
        "no-op build s": statistics.median(noop),
        "save -> build done s": statistics.median(save),
        "runs started (cold)": float(started),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for key, value in machine():
        print(f"{key:>12}: {value}")
    results = {}
    for shape, config in (("one stage", ONE_STAGE), ("pattern", PATTERN)):
        root = WORK / f"pattern-site-{shape.replace(' ', '-')}"
        make_site(root, config, args.pages)
        results[shape] = measure(root, args.runs)
    print(f"\n{args.pages} pages, medians of {args.runs}")
    print(f"{'':>24} {'one stage':>12} {'pattern':>12} {'ratio':>8}")
    for figure in results["one stage"]:
        one, pattern = results["one stage"][figure], results["pattern"][figure]
        ratio = f"{pattern / one:.2f}x" if one else "-"
        print(f"{figure:>24} {one:>12.3f} {pattern:>12.3f} {ratio:>8}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
