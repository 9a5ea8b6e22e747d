"""The preview's HTTP decisions, as pure functions: which Host and Origin are ours, what a Range
asks for, how a response is cached, where the live script goes, what type a file is."""

from __future__ import annotations

import ipaddress
import mimetypes
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
# Types mimetypes may not know, or knows differently across systems.
_TYPES = {
    ".html": "text/html", ".htm": "text/html", ".css": "text/css", ".js": "text/javascript",
    ".mjs": "text/javascript", ".json": "application/json", ".svg": "image/svg+xml",
    ".wasm": "application/wasm", ".webp": "image/webp", ".avif": "image/avif",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ico": "image/x-icon", ".md": "text/markdown",
    ".txt": "text/plain", ".xml": "application/xml", ".webmanifest": "application/manifest+json",
    ".map": "application/json",
}  # fmt: skip
_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)
_HTML_END = re.compile(rb"</html\s*>", re.IGNORECASE)
# Where a page says its own encoding: a byte order mark, or a <meta> within its first 1024
# bytes (where browsers look for it).
_BOMS = (b"\xef\xbb\xbf", b"\xfe\xff", b"\xff\xfe")
_META_CHARSET = re.compile(rb"<meta[^>]*charset\s*=", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit(): it takes "²", which int() refuses


def host_name(header: str | None) -> str | None:
    """The name in a Host header, without its port and brackets, lower case; None if malformed."""
    if not header:
        return None
    try:
        parts = urlsplit("//" + header)
        name, _ = parts.hostname, parts.port  # .port raises on a bad port
    except ValueError:
        return None
    if not name or parts.username is not None or parts.path:
        return None
    return name.lower().rstrip(".")


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def is_loopback_bind(bind: str) -> bool:
    address = _ip(bind)
    return bind.lower() in LOOPBACK_NAMES or (address is not None and address.is_loopback)


def allowed_host_names(bind: str, machine_names: Iterable[str] = ()) -> frozenset[str]:
    """The names a Host header may carry: the bound name, localhost and, when bound to every
    address, the machine's own names. Other names are how DNS rebinding reaches a local server."""
    names = {bind.lower(), *LOOPBACK_NAMES}
    if not is_loopback_bind(bind):
        names.update(name.lower() for name in machine_names if name)
    return frozenset(names)


def host_allowed(header: str | None, bind: str, names: frozenset[str]) -> bool:
    """Whether a request's Host is ours. An address literal cannot be rebound by DNS: loopback
    ones are ours on a loopback bind, and any address is when bound beyond it."""
    name = host_name(header)
    if name is None:
        return False
    if name in names or name.endswith(".localhost"):
        return True
    address = _ip(name)
    if address is None:
        return False
    return address.is_loopback or not is_loopback_bind(bind)


def same_origin(origin: str | None, host: str | None) -> bool:
    """A WebSocket upgrade comes from a page of this server: its Origin is http://<Host>."""
    if not origin or not host:
        return False
    return origin.lower() in (f"http://{host.lower()}", f"https://{host.lower()}")


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


UNSATISFIABLE = "unsatisfiable"


def parse_range(header: str | None, size: int) -> ByteRange | str | None:
    """A single `bytes=` range of a `size`-byte body; None: serve it whole (no range, several
    ranges, or one that does not parse: RFC 9110 lets a server ignore those); UNSATISFIABLE: 416."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first or last) or not all(_DIGITS.fullmatch(part) for part in (first, last) if part):
        return None
    if not first:  # the last N bytes
        suffix = _at_most(last, size)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return ByteRange(size - suffix, size - 1)
    start = _at_most(first, size)
    end = _at_most(last, size - 1) if last else size - 1
    if start >= size:
        return UNSATISFIABLE
    if end < start:
        return None
    return ByteRange(start, end)


@dataclass(frozen=True, slots=True)
class Reply:
    """What a request for a file's bytes gets: its status, and for a 206 the part sent."""

    status: int
    part: ByteRange | None = None


def reply_for(
    status: int,
    size: int,
    etag: str,
    if_none_match: str | None,
    range_header: str | None,
    if_range: str | None,
) -> Reply:
    """How to answer for a `size`-byte file whose ETag is `etag`, served with `status` (a 404
    page is never a 304 nor a part). If-Range holds only for this very ETag: another one, a weak
    one or a date (no Last-Modified is ever sent) means the client holds other bytes, and it
    gets the whole file, never a part of these spliced onto those."""
    if status == 200 and etag_matches(if_none_match, etag):
        return Reply(304)
    wanted = parse_range(range_header, size) if status == 200 else None
    if if_range is not None and if_range.strip() != etag:
        wanted = None
    if wanted == UNSATISFIABLE:
        return Reply(416)
    if isinstance(wanted, ByteRange):
        return Reply(206, wanted)
    return Reply(status)


def _at_most(digits: str, ceiling: int) -> int:
    """The number, but no more than `ceiling`: a number longer than any size is just "past the
    end" (and int() refuses one of thousands of digits)."""
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(ceiling)):
        return ceiling
    return min(int(digits), ceiling)


def is_html(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() in (".html", ".htm")


def is_stylesheet(url_path: str) -> bool:
    return posixpath.splitext(url_path)[1].lower() == ".css"


def content_type(path: str) -> str:
    """The Content-Type of a file, by its name; text gets a charset."""
    ext = posixpath.splitext(path)[1].lower()
    kind = _TYPES.get(ext) or mimetypes.guess_type(path, strict=False)[0] or "application/octet-stream"
    textual = kind.startswith("text/") or kind in ("application/json", "application/xml", "image/svg+xml")
    return f"{kind}; charset=utf-8" if textual else kind


def html_content_type(page: bytes) -> str:
    """A page that says its own encoding is left to say it: a charset in Content-Type would
    override its <meta charset> (ISO-8859-1 shown as UTF-8). Others are UTF-8, as a browser
    would not guess."""
    if page.startswith(_BOMS) or _META_CHARSET.search(page[:1024]):
        return "text/html"
    return "text/html; charset=utf-8"


def cache_headers(html: bool, etag: str) -> dict[str, str]:
    """HTML is never stored (its script and its freshness are per request); assets are kept
    and revalidated by their digest, so a reload costs a 304 for what did not change."""
    if html:
        return {"Cache-Control": "no-store"}
    return {"Cache-Control": "no-cache", "ETag": etag}


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def inject(page: bytes, tag: bytes) -> bytes:
    """The page with `tag` before its last </body> (else </html>, else at its end)."""
    for pattern in (_BODY_END, _HTML_END):
        found = list(pattern.finditer(page))
        if found:
            at = found[-1].start()
            return page[:at] + tag + page[at:]
    return page + tag
