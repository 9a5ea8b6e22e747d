"""Helpers shared by the page and index stages: a tiny markdown subset and the page template."""

from __future__ import annotations

import html
import re
from pathlib import Path

SITE_TITLE = "A stagewatch example"

_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"\*([^*]+)\*"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]]+)\]\(([^)]+)\)"), r'<a href="\2">\1</a>'),
]


def inline(text: str) -> str:
    text = html.escape(text, quote=False)
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    return text


def markdown_to_html(source: str) -> tuple[str, str]:
    """(title, body HTML) from headings, paragraphs and "- " lists."""
    title = ""
    blocks: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(f"<p>{inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            blocks.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in source.splitlines():
        stripped = line.strip()
        if not stripped:
            flush()
        elif stripped.startswith("#"):
            flush()
            level = len(stripped) - len(stripped.lstrip("#"))
            text = stripped[level:].strip()
            title = title or text
            blocks.append(f"<h{level}>{inline(text)}</h{level}>")
        elif stripped.startswith("- "):
            if paragraph:
                flush()
            items.append(stripped[2:])
        else:
            paragraph.append(stripped)
    flush()
    return title, "\n".join(blocks)


def page(title: str, body: str, depth: int = 0) -> str:
    """A whole page; `depth` is how many folders below the site's root it lies (for the stylesheet)."""
    stylesheet = "../" * depth + "assets/style.css"
    return (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)} - {SITE_TITLE}</title>"
        f"<link rel=\"stylesheet\" href=\"{stylesheet}\"></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def write_if_changed(path: Path, text: str) -> None:
    """Leave identical files alone, so stages downstream see no change at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
