"""Render every content/*.md page to _build/site/pages/<name>.html."""

from __future__ import annotations

from pathlib import Path

from .common import markdown_to_html, page, write_if_changed


def run(output_dir: Path) -> None:
    out = output_dir / "_build" / "site" / "pages"
    out.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for source in sorted((output_dir / "content").glob("*.md")):
        title, body = markdown_to_html(source.read_text(encoding="utf-8"))
        target = out / (source.stem + ".html")
        write_if_changed(target, page(title or source.stem, body))
        wanted.add(target.name)
        print(f"rendered {source.name} -> {target.relative_to(output_dir)}")
    for stale in out.glob("*.html"):
        if stale.name not in wanted:
            stale.unlink()
            print(f"removed {stale.relative_to(output_dir)}")
