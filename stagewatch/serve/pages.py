"""stagewatch's own HTML: the live script's tag, HTML responses (never stored), its own pages
(an error, a missing file, a file still being written) and folder listings."""

from __future__ import annotations

import html
import posixpath
from collections.abc import Iterable
from urllib.parse import quote

from aiohttp import web

from stagewatch.serve.rules import cache_headers, inject
from stagewatch.serve.tabs import identity

CLIENT_PATH = "/_stagewatch/client.js"


def script_tag(served: str, stale: Iterable[str] = ()) -> bytes:
    """The live script, told which bytes the page is (`served`) and, when they are the last
    good ones of a page still being written, by which stages (`stale`: a banner says so)."""
    said = f' data-stale="{html.escape(" ".join(stale))}"' if stale else ""
    return f'<script src="{CLIENT_PATH}" data-identity="{served}"{said}></script>'.encode()


def html_response(
    body: bytes,
    status: int,
    kind: str = "text/html; charset=utf-8",
    said: dict[str, str] | None = None,
) -> web.Response:
    headers = {**cache_headers(True, ""), "Content-Type": kind, **(said or {})}
    return web.Response(status=status, body=body, headers=headers)


def own_page(status: int, title: str, message: str, served: str = "") -> web.Response:
    """stagewatch's own page (an error, a missing file), with the live script: the tab
    reloads by itself once the page exists."""
    body = (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{status} {html.escape(title)}</title>"
        f"</head>\n<body><h1>{status} {html.escape(title)}</h1><p>{html.escape(message)}</p>"
        f"<p><a href='/_stagewatch/'>stagewatch status</a></p></body></html>\n"
    )
    return html_response(inject(body.encode(), script_tag(served)), status)


def listing_page(url_path: str, entries: list[tuple[str, bool]], served: str) -> web.Response:
    """A folder without an index.html: its entries, linked (names percent-encoded)."""
    items = "\n".join(
        f'<li><a href="{html.escape(quote(name))}{"/" if is_dir else ""}">{html.escape(name)}'
        f"{'/' if is_dir else ''}</a></li>"
        for name, is_dir in entries
    )
    up = "<li><a href='../'>../</a></li>\n" if url_path != "/" else ""
    body = (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(url_path)}</title>"
        f"</head>\n<body><h1>Index of {html.escape(url_path)}</h1>\n"
        f"<ul>\n{up}{items}\n</ul></body></html>\n"
    )
    return html_response(inject(body.encode(), script_tag(served)), 200)


def listing_identity(folder: str, entries: list[tuple[str, bool]]) -> str:
    names = "\n".join(f"{name}{'/' if is_dir else ''}" for name, is_dir in entries)
    return identity(posixpath.join(folder, ""), names.encode("utf-8", "surrogateescape"))
