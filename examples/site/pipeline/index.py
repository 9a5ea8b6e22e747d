"""Build _build/site/index.html: a link to every rendered page, and the stats of the day."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from pipeline import common

_TITLE = re.compile(r"<h1>(.*?)</h1>")


def run(output_dir: Path) -> None:
    pages = output_dir / "_build" / "site" / "pages"
    links = []
    for rendered in sorted(pages.rglob("*.html")):
        found = _TITLE.search(rendered.read_text(encoding="utf-8"))
        title = found.group(1) if found else html.escape(rendered.stem)
        links.append(f'<li><a href="pages/{rendered.relative_to(pages).as_posix()}">{title}</a></li>')
    stats = json.loads((output_dir / "_build" / "stats.json").read_text(encoding="utf-8"))
    body = (
        f"<h1>{common.SITE_TITLE}</h1>\n<ul>\n" + "\n".join(links) + "\n</ul>\n"
        f"<p>{stats['repos']} repositories, {stats['stars']} stars in all.</p>"
    )
    common.write_if_changed(output_dir / "_build" / "site" / "index.html", common.page("Home", body))
    print(f"index lists {len(links)} pages")
