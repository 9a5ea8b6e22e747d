"""`stagewatch serve` against requests and tabs that are wrong on purpose: malformed HTTP, a
tab that says nonsense, paths that would lead a browser elsewhere, a pipeline file changed
under it. A real daemon, real sockets."""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from collections.abc import Iterator
from urllib.parse import unquote

import pytest

from tests.helpers.project import Project
from tests.helpers.serve import (
    BIG,
    MAKE_BIG,
    Served,
    make_site,
    serve,
    serve_made_site,
    ws_open,
    ws_receive,
    ws_send,
)

pytestmark = pytest.mark.timeout(60)

MAKE = r"""
import pathlib
site = pathlib.Path("site")
(site / "sub").mkdir(parents=True, exist_ok=True)
(site / "index.html").write_text("<!doctype html><html><head><title>home</title></head><body>home</body>")
(site / "sub" / "index.html").write_text("<!doctype html><p>sub")
(site / "data.bin").write_bytes(bytes(range(256)) * 4)
(site / "odd").mkdir(exist_ok=True)
for name in ("a#b.txt", "q?x.txt", "%41.txt"):
    (site / "odd" / name).write_text(name)
(site / "latin.html").write_bytes(
    b'<!doctype html><html><head><meta charset="iso-8859-1"><title>l</title></head>'
    b'<body><p>caf\xe9</p></body></html>'
)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = serve_made_site(Project(tmp_path_factory.mktemp("hostile")), MAKE)
    try:
        yield served
    finally:
        served.daemon.stop()


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send bytes as they are; read the whole answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_range_of_thousands_of_digits_is_answered_not_a_server_error(site: Served) -> None:
    data = bytes(range(256)) * 4
    # Python's int() refuses more than 4300 digits: a number that long is just "past the end".
    past_the_end = site.get("/data.bin", {"Range": "bytes=10-" + "9" * 5000})
    assert (past_the_end.status, past_the_end.body) == (206, data[10:])
    assert site.get("/data.bin", {"Range": "bytes=" + "9" * 5000 + "-"}).status == 416
    assert site.get("/data.bin", {"Range": "bytes=-" + "0" * 4999 + "4"}).body == data[-4:]


def test_a_malformed_request_is_one_line_in_the_log_and_no_traceback(project: Project) -> None:
    make_site(project)
    served = serve(project)
    try:
        mark = served.daemon.mark()
        answer = raw_exchange(
            served.port,
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nX-Big: {'a' * 9000}\r\n\r\n".encode(),
        )
        assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
        served.daemon.wait_event("serve.bad_request", mark)
    finally:
        assert served.daemon.stop() == 0
    assert "Traceback" not in "".join(served.daemon.stderr)


# --- a tab over a raw WebSocket -------------------------------------------------------------


@pytest.mark.parametrize("loaded", [5, None, {"a": 1}])
def test_a_tab_that_says_nonsense_is_still_welcomed(site: Served, loaded: object) -> None:
    with ws_open(site.port) as sock:
        ws_send(sock, json.dumps({"type": "hello", "page": "/", "loaded": loaded}))
        opcode, payload = ws_receive(sock)
        assert (opcode, json.loads(payload)) == (0x1, {"type": "welcome"})


# --- a large file changed while it is sent -------------------------------------------------


@pytest.mark.parametrize("rewrite", ["same size", "cut short"])
def test_a_large_file_rewritten_while_it_is_sent_is_cut_short_never_spliced(
    project: Project, rewrite: str
) -> None:
    served = serve_made_site(project, MAKE_BIG.format(fill=b"a"))
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it cannot take it all at once
            sock.settimeout(10)
            sock.connect(("127.0.0.1", served.port))
            sock.sendall(f"GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
            head, body = answer.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200") and f"Content-Length: {BIG}".encode() in head
            with open(project.root / "site" / "big.bin", "r+b") as file:  # in place, as some tools do
                file.write(b"b" * (BIG if rewrite == "same size" else 1000))
                file.truncate()
            while len(body) < BIG:
                try:
                    chunk = sock.recv(1 << 20)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                body += chunk
        assert len(body) < BIG  # cut short: the client knows it has not got the file
        assert body == b"a" * len(body)  # and what it got is all of one version
    finally:
        assert served.daemon.stop() == 0


# A stop takes a fraction of a second; aiohttp's own wait for a request's handler is a second,
# and twice that for one that writes to a client that does not read.
PROMPT_STOP_S = 1.5


@pytest.mark.parametrize("path", ["/big.bin", "/page.html"])
def test_a_download_that_is_never_read_does_not_hold_up_a_stop(project: Project, path: str) -> None:
    served = serve_made_site(
        project, MAKE_BIG.format(fill=b"a") + "(site / 'page.html').write_bytes(b'<p>' + b'x' * 6_000_000)\n"
    )
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", served.port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
            assert sock.recv(12).startswith(b"HTTP/1.1 200")  # it is being sent, and it stops reading
            started = time.monotonic()
            assert served.daemon.stop() == 0
            assert time.monotonic() - started < PROMPT_STOP_S
    finally:
        served.daemon.__exit__()
    assert not [event for event in served.daemon.events if event.get("level") == "error"]
    assert "Traceback" not in "".join(served.daemon.stderr)


# --- where a browser is sent ----------------------------------------------------------------


def test_a_folder_asked_for_with_a_double_slash_is_redirected_within_the_site(site: Served) -> None:
    # "//sub/" as a Location is another host ("http://sub/") to a browser: an open redirect.
    reply = site.get("//sub")
    assert reply.status == 302
    assert reply.headers["location"] == "/sub/"


def test_a_listing_links_to_names_with_url_characters(site: Served) -> None:
    listing = site.get("/odd/").text
    hrefs = re.findall(r'href="([^"]+)"', listing)
    assert sorted(hrefs) == ["%2541.txt", "a%23b.txt", "q%3Fx.txt"]
    for href in hrefs:
        followed = site.get("/odd/" + href)
        assert followed.status == 200 and unquote(href) == followed.text


def test_a_page_that_declares_its_own_charset_is_not_told_it_is_utf8(site: Served) -> None:
    # A charset in Content-Type overrides the page's <meta charset> in every browser: café would
    # show as caf\ufffd in the preview, and as café from any server that says nothing.
    latin = site.get("/latin.html")
    assert latin.headers["content-type"] == "text/html"
    assert "caf\xe9".encode("latin-1") in latin.body
    assert site.get("/").headers["content-type"] == "text/html; charset=utf-8"


# --- the pipeline file changed under it -----------------------------------------------------


def test_a_changed_serve_table_is_said_to_need_a_restart(project: Project) -> None:
    make_site(project)
    served = serve(project)
    try:
        mark = served.daemon.mark()
        config = project.read("stagewatch.toml")
        project.config(config.replace('root = "site"', 'root = "elsewhere"'))
        reloaded = served.daemon.wait_event("config.reloaded", mark)
        said = served.daemon.events[served.daemon.wait_event("serve.restart_needed", reloaded)]
        assert said["changed"] == ["root"]
        assert "first text of a" in served.get("/a.html").text  # still the folder it started with
    finally:
        assert served.daemon.stop() == 0


# --- a failed stage's last good bytes -------------------------------------------------------

TRUNCATE_THEN_FAIL = r"""
import pathlib, sys
text = pathlib.Path("page.txt").read_text()
out = pathlib.Path("site/page.html")
out.parent.mkdir(exist_ok=True)
if "BROKEN" in text:
    out.write_text("<p>HALF")  # what a crash mid-write leaves
    sys.exit(3)
out.write_text(f"<!doctype html><html><body><p>{text}</p></body></html>")
"""


def test_a_page_first_asked_for_after_its_stage_failed_is_its_last_good_bytes(project: Project) -> None:
    project.write("render.py", TRUNCATE_THEN_FAIL)
    project.write("page.txt", "the good text")
    project.config(
        f"""
        [pipeline]
        debounce = "50ms"

        [serve]
        root = "site"

        [[stage]]
        name = "page"
        command = ["{sys.executable}", "render.py"]
        inputs = ["page.txt"]
        outputs = ["site/page.html"]
        """
    )
    served = serve(project)
    try:
        mark = served.daemon.mark()
        project.write("page.txt", "BROKEN")
        served.daemon.wait_event("stage.failed", mark, stage="page")
        reply = served.get("/page.html")
        assert "the good text" in reply.text and "HALF" not in reply.text
    finally:
        assert served.daemon.stop() == 0
