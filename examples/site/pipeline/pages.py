"""Render every content/**/*.md page (drafts/ aside) to _build/site/pages/<path>.html."""

from __future__ import annotations

from pathlib import Path

from .common import markdown_to_html, page, write_if_changed


def run(output_dir: Path) -> None:
    content = output_dir / "content"
    out = output_dir / "_build" / "site" / "pages"
    out.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for source in sorted(content.rglob("*.md")):
        relative = source.relative_to(content)
        if relative.parts[0] == "drafts":  # the pipeline's ignore list leaves drafts out too
            continue
        title, body = markdown_to_html(source.read_text(encoding="utf-8"))
        target = out / relative.with_suffix(".html")
        depth = len(target.relative_to(out.parent).parts) - 1
        write_if_changed(target, page(title or source.stem, body, depth))
        wanted.add(target)
        print(f"rendered {relative} -> {target.relative_to(output_dir)}")
    for stale in out.rglob("*.html"):
        if stale not in wanted:
            stale.unlink()
            print(f"removed {stale.relative_to(output_dir)}")
