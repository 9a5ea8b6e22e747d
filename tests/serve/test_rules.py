"""The preview's pure decisions, as tables: Host and Origin, ranges and If-Range, the script's
place, what a settled round means for a tab, which file a URL path comes to, which folder is the
site, how a failure is read and when it is over."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from stagewatch.config import parse_pipeline
from stagewatch.pipeline import Pipeline
from stagewatch.serve.rules import (
    UNSATISFIABLE,
    ByteRange,
    Reply,
    allowed_host_names,
    host_allowed,
    html_content_type,
    inject,
    parse_range,
    reply_for,
    same_origin,
)
from stagewatch.serve.site import Kind, find_site_root, resolve
from stagewatch.serve.status import resolved, shown_time
from stagewatch.serve.tabs import Reload, SwapStylesheets, Tab, after_round
from stagewatch.stage import StageState
from stagewatch.state import Attempt

LOOPBACK = allowed_host_names("127.0.0.1")
EVERYWHERE = allowed_host_names("0.0.0.0", ("buildbox", "buildbox.lan"))


@pytest.mark.parametrize(
    ("host", "names", "bind", "allowed"),
    [
        ("127.0.0.1:8000", LOOPBACK, "127.0.0.1", True),
        ("localhost:8000", LOOPBACK, "127.0.0.1", True),
        ("LOCALHOST", LOOPBACK, "127.0.0.1", True),
        ("app.localhost:8000", LOOPBACK, "127.0.0.1", True),
        ("[::1]:8000", LOOPBACK, "127.0.0.1", True),
        ("evil.example:8000", LOOPBACK, "127.0.0.1", False),  # DNS rebinding
        ("192.168.1.5:8000", LOOPBACK, "127.0.0.1", False),
        ("buildbox:8000", LOOPBACK, "127.0.0.1", False),
        ("", LOOPBACK, "127.0.0.1", False),
        (None, LOOPBACK, "127.0.0.1", False),
        ("a@127.0.0.1", LOOPBACK, "127.0.0.1", False),
        ("127.0.0.1:notaport", LOOPBACK, "127.0.0.1", False),
        ("buildbox.lan:8000", EVERYWHERE, "0.0.0.0", True),
        ("192.168.1.5:8000", EVERYWHERE, "0.0.0.0", True),  # an address cannot be rebound
        ("evil.example", EVERYWHERE, "0.0.0.0", False),
    ],
)
def test_host_allowed(host: str | None, names: frozenset[str], bind: str, allowed: bool) -> None:
    assert host_allowed(host, bind, names) is allowed


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://LOCALHOST:8000", "localhost:8000", True),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", False),
        ("http://evil.example", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),
        (None, "127.0.0.1:8000", False),
    ],
)
def test_same_origin(origin: str | None, host: str, same: bool) -> None:
    assert same_origin(origin, host) is same


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=90-", ByteRange(90, 99)),
        ("bytes=90-500", ByteRange(90, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-500", ByteRange(0, 99)),
        ("bytes=100-", UNSATISFIABLE),
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=5-1", None),
        ("bytes=0-1,5-6", None),  # several ranges: the whole body
        ("items=0-1", None),
        ("bytes=a-b", None),
        ("bytes=-", None),
        ("bytes=\u00b2-", None),  # a digit to str.isdigit(), not to int()
        ("bytes=0-" + "9" * 5000, ByteRange(0, 99)),  # more digits than int() reads: past the end
        ("bytes=" + "9" * 5000 + "-", UNSATISFIABLE),
        ("bytes=-" + "9" * 5000, ByteRange(0, 99)),
        ("bytes=" + "0" * 5000 + "1-2", ByteRange(1, 2)),
    ],
)
def test_parse_range(header: str | None, expected: object) -> None:
    assert parse_range(header, 100) == expected


ETAG = '"abc"'


@pytest.mark.parametrize(
    ("status", "if_none_match", "range_header", "if_range", "expected"),
    [
        (200, None, None, None, Reply(200)),
        (200, ETAG, None, None, Reply(304)),
        (200, f'W/{ETAG}, "other"', None, None, Reply(304)),
        (404, ETAG, None, None, Reply(404)),  # the site's 404 page is never "not modified"
        (200, None, "bytes=0-9", None, Reply(206, ByteRange(0, 9))),
        (200, None, "bytes=0-9", ETAG, Reply(206, ByteRange(0, 9))),
        (200, None, "bytes=0-9", f" {ETAG} ", Reply(206, ByteRange(0, 9))),
        # The client holds other bytes: the whole body, never a part of these.
        (200, None, "bytes=0-9", '"older"', Reply(200)),
        (200, None, "bytes=0-9", f"W/{ETAG}", Reply(200)),  # If-Range compares strongly
        (200, None, "bytes=0-9", "Fri, 01 Jan 2100 00:00:00 GMT", Reply(200)),  # no date is ever given
        (200, None, "bytes=0-9", "", Reply(200)),
        (200, None, "bytes=500-", '"older"', Reply(200)),  # not a 416: the range is for other bytes
        (200, None, "bytes=500-", None, Reply(416)),
        (404, None, "bytes=0-9", None, Reply(404)),
    ],
)
def test_reply_for(
    status: int, if_none_match: str | None, range_header: str | None, if_range: str | None, expected: Reply
) -> None:
    assert reply_for(status, 100, ETAG, if_none_match, range_header, if_range) == expected


def attempt(result: StageState) -> Attempt:
    return Attempt(result, "2026-01-01T00:00:00+00:00")


@pytest.mark.parametrize(
    ("last", "failing", "expected"),
    [
        (attempt(StageState.SUCCEEDED), True, True),  # succeeded since (the preview hears it a moment later)
        (attempt(StageState.FAILED), False, False),  # the failure itself, heard of or not yet
        (attempt(StageState.RUNNING), True, False),  # a retry under way: not over yet
        (attempt(StageState.RUNNING), False, True),  # a run after the success that ended it
        (attempt(StageState.CANCELLED), False, True),
        (None, False, True),
    ],
)
def test_a_last_failure_is_resolved(last: Attempt | None, failing: bool, expected: bool) -> None:
    assert resolved(last, failing) is expected


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (b"<body><p>x</p></body></html>", b"<body><p>x</p>TAG</body></html>"),
        (b"<BODY>a</BODY >", b"<BODY>aTAG</BODY >"),
        (b"<p>'</body>' in text</p></body>", b"<p>'</body>' in text</p>TAG</body>"),
        (b"<html><p>x</html>", b"<html><p>xTAG</html>"),
        (b"<p>x", b"<p>xTAG"),
    ],
)
def test_inject_goes_before_the_last_body_end(page: bytes, expected: bytes) -> None:
    assert inject(page, b"TAG") == expected


@pytest.mark.parametrize(
    ("page", "content_type"),
    [
        (b"<!doctype html><p>x", "text/html; charset=utf-8"),
        (b'<html><head><meta charset="iso-8859-1"><p>caf\xe9', "text/html"),
        (b"<META HTTP-EQUIV='Content-Type' CONTENT='text/html; charset=Shift_JIS'>", "text/html"),
        (b"\xef\xbb\xbf<p>x", "text/html"),
        (b"\xff\xfe<\x00p\x00>\x00", "text/html"),
        (b"<p>" + b"x" * 2000 + b'<meta charset="latin1">', "text/html; charset=utf-8"),  # too late
    ],
)
def test_a_page_that_says_its_encoding_is_left_to_say_it(page: bytes, content_type: str) -> None:
    assert html_content_type(page) == content_type


@pytest.mark.parametrize(
    ("seen", "now", "expected"),
    [
        ({"/a.html": "1", "/s.css": "1"}, {"/a.html": "1", "/s.css": "1"}, None),
        ({"/a.html": "1", "/s.css": "1"}, {"/a.html": "2", "/s.css": "1"}, Reload(("/a.html",))),
        ({"/a.html": "1", "/s.css": "1"}, {"/a.html": "1", "/s.css": "2"}, SwapStylesheets(("/s.css",))),
        ({"/a.html": "1", "/s.css": "1", "/x.js": "1"}, {"/a.html": "1", "/s.css": "2", "/x.js": "2"},
         Reload(("/s.css", "/x.js"))),
        ({"/a.html": "1", "/i.png": "1"}, {"/a.html": "1", "/i.png": "missing"}, Reload(("/i.png",))),
        ({"/a.html": "1"}, {}, None),  # not trusted now (its stage failed): nothing
        ({"/a.html": "1", "/other.html": "1"}, {"/a.html": "1"}, None),
    ],
)  # fmt: skip
def test_after_round(seen: dict[str, str], now: dict[str, str], expected: object) -> None:
    assert after_round(Tab("/a.html", dict(seen)), now) == expected


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "docs").mkdir(parents=True)
    (root / "empty").mkdir()
    for name in ("index.html", "about.html", "docs/index.html", "a.b"):
        (root / name).write_text(name)
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "out.txt")
    os.symlink(tmp_path, root / "up")
    os.symlink("about.html", root / "alias.html")
    os.symlink(tmp_path / "nowhere", root / "dangling")
    return root


@pytest.mark.parametrize(
    ("url", "kind", "file"),
    [
        ("/", Kind.FILE, "index.html"),
        ("/about", Kind.FILE, "about.html"),
        ("/about.html", Kind.FILE, "about.html"),
        ("/docs", Kind.REDIRECT, None),
        ("/docs/", Kind.FILE, "docs/index.html"),
        ("/empty/", Kind.LISTING, "empty"),
        ("/alias.html", Kind.FILE, "alias.html"),
        ("/a.b", Kind.FILE, "a.b"),
        ("/a", Kind.MISSING, None),
        ("/nope/", Kind.MISSING, None),
        ("/../secret.txt", Kind.REFUSED, None),
        ("/docs/../../secret.txt", Kind.REFUSED, None),
        ("/out.txt", Kind.REFUSED, None),
        ("/up/secret.txt", Kind.REFUSED, None),
        ("/up/", Kind.REFUSED, None),
        ("/dangling", Kind.REFUSED, None),
        ("/a\\..\\b", Kind.REFUSED, None),
        ("/a\x00", Kind.REFUSED, None),
    ],
)
def test_resolve(site: Path, url: str, kind: Kind, file: str | None) -> None:
    found = resolve(str(site), url)
    assert found.kind is kind
    assert found.path == (None if file is None else str(site / file))


def test_resolve_never_serves_a_hidden_folder(site: Path) -> None:
    assert resolve(str(site), "/docs/index.html", hidden=(str(site / "docs"),)).kind is Kind.REFUSED


def _pipeline(tmp_path: Path, text: str) -> Pipeline:
    return parse_pipeline(tomllib.loads(text), tmp_path / "stagewatch.toml")


@pytest.mark.parametrize(
    ("outputs", "on_disk", "root", "has_index"),
    [
        ('["out/pages/", "out/index.html"]', [], "out", True),
        ('["out/pages/", "out/index.html"]', ["out/pages/index.html"], "out/pages", True),
        ('["public/"]', [], "public", False),
        ('["a/x.json", "a/b/y.json"]', [], "a", False),
    ],
)
def test_the_site_is_the_first_output_folder_holding_an_index(
    tmp_path: Path, outputs: str, on_disk: list[str], root: str, has_index: bool
) -> None:
    for rel in on_disk:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    pipeline = _pipeline(tmp_path, f'[[stage]]\nname = "s"\ncommand = ["true"]\noutputs = {outputs}\n')
    found = find_site_root(pipeline)
    assert (found.path, found.has_index) == (str(tmp_path / root), has_index)


def test_serve_root_is_the_site_when_given(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, '[serve]\nroot = "www/"\n[[stage]]\nname = "s"\ncommand = ["true"]\n')
    found = find_site_root(pipeline)
    assert (found.path, found.why) == (str(tmp_path / "www"), "[serve] root")


@pytest.mark.parametrize(
    ("iso", "shown"),
    [
        ("2026-12-07T16:38:27+00:00", "2026-12-07 16:38:27 UTC"),
        ("2026-12-07T17:38:27+01:00", "2026-12-07 16:38:27 UTC"),
        ("2026-12-07T16:38:27", "2026-12-07 16:38:27"),
        (None, "-"),
        ("not a time", "not a time"),
    ],
)
def test_a_recorded_time_is_shown_in_one_short_line(iso: str | None, shown: str) -> None:
    assert shown_time(iso) == shown
