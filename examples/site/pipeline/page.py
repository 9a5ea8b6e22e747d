"""Render one page, content/<page>.md, to _build/site/pages/<page>.html.

A pattern stage: stagewatch calls run once per markdown file, with the file's path below
content/ (without ".md") as `page`, so a saved page re-renders that page alone.
"""

from __future__ import annotations

from pathlib import Path

from .common import markdown_to_html, page as template, write_if_changed


def run(output_dir: Path, page: str) -> None:
    source = output_dir / "content" / f"{page}.md"
    target = output_dir / "_build" / "site" / "pages" / f"{page}.html"
    title, body = markdown_to_html(source.read_text(encoding="utf-8"))
    depth = page.count("/") + 1  # folders between the site's root and this page
    target.parent.mkdir(parents=True, exist_ok=True)
    write_if_changed(target, template(title or Path(page).name, body, depth))
    print(f"rendered content/{page}.md -> {target.relative_to(output_dir)}")
