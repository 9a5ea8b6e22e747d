"""`stagewatch serve` over plain HTTP: a dev server's manners and its safety rules, on a real
daemon serving a real site folder (no browser)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.helpers.daemon import RunningDaemon
from tests.helpers.project import Project
from tests.helpers.serve import (
    BIG,
    MAKE_BIG,
    SHORT_WAIT,
    Served,
    make_site,
    request,
    serve,
    serve_made_site,
    until,
)

pytestmark = pytest.mark.timeout(60)

MAKE = r"""
import pathlib
site = pathlib.Path("site")
(site / "sub").mkdir(parents=True, exist_ok=True)
page = '<!doctype html><html><head><title>{0}</title></head><body><h1>{0}</h1></body></html>'
(site / "index.html").write_text(page.format("home page"))
(site / "about.html").write_text(page.format("about page"))
(site / "404.html").write_text(page.format("site's own 404"))
(site / "sub" / "deep.txt").write_text("deep text\n")
(site / "style.css").write_text("body { color: red }\n")
(site / "app.js").write_text("console.log(1)\n")
(site / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'></svg>\n")
(site / "data.bin").write_bytes(bytes(range(256)) * 4)
(site / "bare.html").write_text("<p>no body tag")
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    project = Project(tmp_path_factory.mktemp("served"))
    project.write("secret.txt", "the secret outside the site\n")
    served = serve_made_site(project, MAKE)
    os.symlink(project.root / "secret.txt", project.root / "site" / "out-link.txt")
    os.symlink(project.root, project.root / "site" / "out-folder")
    os.symlink("index.html", project.root / "site" / "in-link.html")
    try:
        yield served
    finally:
        served.daemon.stop()


def test_html_is_served_with_the_live_script_which_never_reaches_the_disk(site: Served) -> None:
    reply = site.get("/")
    assert reply.status == 200
    assert "home page" in reply.text
    assert '<script src="/_stagewatch/client.js"' in reply.text
    assert reply.text.index("/_stagewatch/client.js") < reply.text.index("</body>")
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    on_disk = (site.daemon.project.root / "site" / "index.html").read_text()
    assert "_stagewatch" not in on_disk


def test_a_page_without_body_tag_still_gets_the_script(site: Served) -> None:
    assert site.get("/bare.html").text.endswith("</script>")


def test_pretty_urls_folders_and_their_index(site: Served) -> None:
    assert "about page" in site.get("/about").text
    redirect = site.get("/sub?x=1")
    assert (redirect.status, redirect.headers["location"]) == (302, "/sub/?x=1")
    listing = site.get("/sub/")
    assert listing.status == 200
    assert 'href="deep.txt"' in listing.text and "/_stagewatch/client.js" in listing.text


def test_a_missing_page_is_the_sites_own_404_with_the_script(site: Served) -> None:
    reply = site.get("/no/such/page")
    assert reply.status == 404
    assert "site's own 404" in reply.text and "/_stagewatch/client.js" in reply.text


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/style.css", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/logo.svg", "image/svg+xml; charset=utf-8"),
        ("/sub/deep.txt", "text/plain; charset=utf-8"),
        ("/data.bin", "application/octet-stream"),
    ],
)
def test_content_types(site: Served, path: str, content_type: str) -> None:
    assert site.get(path).headers["content-type"] == content_type


def test_assets_are_revalidated_by_their_digest(site: Served) -> None:
    first = site.get("/style.css")
    assert first.headers["cache-control"] == "no-cache"
    etag = first.headers["etag"]
    again = site.get("/style.css", {"If-None-Match": etag})
    assert (again.status, again.body) == (304, b"")
    assert site.get("/style.css", {"If-None-Match": '"other"'}).status == 200


def test_head_and_ranges(site: Served) -> None:
    data = bytes(range(256)) * 4
    head = site.get("/data.bin", method="HEAD")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "1024")
    part = site.get("/data.bin", {"Range": "bytes=10-19"})
    assert (part.status, part.body, part.headers["content-range"]) == (206, data[10:20], "bytes 10-19/1024")
    assert site.get("/data.bin", {"Range": "bytes=-4"}).body == data[-4:]
    assert site.get("/data.bin", {"Range": "bytes=5000-"}).status == 416
    etag = head.headers["etag"]
    stale = site.get("/data.bin", {"Range": "bytes=0-1", "If-Range": '"older"'})
    assert (stale.status, len(stale.body)) == (200, 1024)
    assert site.get("/data.bin", {"Range": "bytes=0-1", "If-Range": etag}).status == 206


def test_a_resumed_download_of_a_large_file_that_changed_is_the_whole_new_file(project: Project) -> None:
    served = serve_made_site(project, MAKE_BIG.format(fill=b"a"))
    try:
        etag = served.get("/big.bin", method="HEAD").headers["etag"]
        part = served.get("/big.bin", {"Range": "bytes=0-9", "If-Range": etag})
        assert (part.status, part.body) == (206, b"a" * 10)
        mark = served.daemon.mark()
        project.write("make.py", MAKE_BIG.format(fill=b"b"))  # the same size, other bytes
        served.daemon.wait_event("stage.succeeded", mark, stage="site")
        for if_range in (etag, f"W/{etag}", "Fri, 01 Jan 2100 00:00:00 GMT", "garbage"):
            # The client holds other bytes than these: the whole file, never a splice.
            resumed = served.get("/big.bin", {"Range": "bytes=10-", "If-Range": if_range})
            assert (resumed.status, len(resumed.body)) == (200, BIG), if_range
            assert resumed.body == b"b" * BIG
        now = served.get("/big.bin", method="HEAD").headers["etag"]
        assert now != etag
        part = served.get("/big.bin", {"Range": "bytes=10-19", "If-Range": now})
        assert (part.status, part.body) == (206, b"b" * 10)
        assert part.headers["content-range"] == f"bytes 10-19/{BIG}"
    finally:
        served.daemon.stop()


def test_the_status_page_and_its_json(site: Served) -> None:
    page = site.get("/_stagewatch/")
    assert page.status == 200 and "site" in page.text and "make.py" in page.text
    data = json.loads(site.get("/_stagewatch/status.json").body)
    (stage,) = data["stages"]
    assert (stage["name"], stage["state"], stage["writes"]) == ("site", "idle", ["site/"])
    assert stage["last_run"]["result"] == "succeeded" and stage["last_run"]["duration_s"] >= 0


def test_a_failure_in_the_status_json_says_its_exception_line_and_whether_it_is_resolved(
    project: Project,
) -> None:
    make_site(project)
    served = serve(project)
    try:
        mark = served.daemon.mark()
        project.write("content/a.md", "broken text\nBROKEN\n")
        served.daemon.wait_event("stage.failed", mark, stage="pages")
        pages = json.loads(served.get("/_stagewatch/status.json").body)["stages"][0]
        failure = pages["last_failure"]
        assert failure["exception"] == "render: content/a.md has a BROKEN line, giving up"
        assert failure["resolved"] is False
        mark = served.daemon.mark()
        project.write("content/a.md", "fixed text of a\n")
        served.daemon.wait_event("stage.succeeded", mark, stage="pages")
        pages = json.loads(served.get("/_stagewatch/status.json").body)["stages"][0]
        assert pages["last_failure"]["resolved"] is True  # kept, and said to be over
    finally:
        served.daemon.stop()


@pytest.mark.parametrize(
    ("path", "host"),
    [
        ("/", "evil.example"),  # DNS rebinding: a name that is not ours
        ("/", "evil.example:8000"),
        ("/", ""),
        ("/../secret.txt", None),
        ("/%2e%2e/secret.txt", None),
        ("/..%2fsecret.txt", None),
        ("/sub/..%2f..%2fsecret.txt", None),
        ("/out-link.txt", None),  # a symlink leaving the site folder
        ("/out-folder/secret.txt", None),
        ("/_stagewatch/status.json", "evil.example"),
    ],
)
def test_requests_are_refused(site: Served, path: str, host: str | None) -> None:
    headers = {"Host": host} if host is not None else {}
    reply = site.get(path, headers)
    assert reply.status in (400, 403, 404)
    assert "secret" not in reply.text
    assert "access-control-allow-origin" not in reply.headers


def test_loopback_names_and_symlinks_inside_are_served(site: Served) -> None:
    for host in (f"localhost:{site.port}", f"127.0.0.1:{site.port}", "localhost"):
        assert site.get("/", {"Host": host}).status == 200
    assert "home page" in site.get("/in-link.html").text


def _upgrade(site: Served, origin: str) -> int:
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        "Origin": origin,
    }
    return request(site.port, "/_stagewatch/ws", headers).status


def test_websocket_upgrades_only_from_the_same_origin(site: Served) -> None:
    assert _upgrade(site, "http://evil.example") == 403
    assert _upgrade(site, "null") == 403
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /_stagewatch/ws HTTP/1.1\r\nHost: 127.0.0.1:{site.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://127.0.0.1:{site.port}\r\n\r\n"
            ).encode()
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 101")


# --- its own daemons -----------------------------------------------------------------------


def test_a_request_during_a_slow_stage_gets_the_finished_page(project: Project) -> None:
    make_site(project)
    served = serve(project)
    try:
        mark = served.daemon.mark()
        project.write("content/a.md", "the new text\nSLOW\n")
        served.daemon.wait_event("stage.started", mark, stage="pages")
        page = project.root / "site" / "a.html"
        until(lambda: "PART ONE" in page.read_text(), "the stage has written half of the page")
        assert 'id="end"' not in page.read_text()
        reply = served.get("/a.html")
        assert "PART ONE" in reply.text and "the new text" in reply.text and reply.text.count("</html>") == 1
        assert 'id="end"' in reply.text
    finally:
        served.daemon.stop()


def test_a_page_still_written_after_the_wait_is_its_last_good_bytes_said_stale(project: Project) -> None:
    make_site(project)
    served = serve(project, env=SHORT_WAIT)
    try:
        assert "first text of a" in served.get("/a.html").text
        mark = served.daemon.mark()
        project.write("content/a.md", "the new text\nHOLD\n")
        served.daemon.wait_event("stage.started", mark, stage="pages")
        page = project.root / "site" / "a.html"
        until(lambda: "PART ONE" in page.read_text(), "the stage has written half of the page")
        stale = served.get("/a.html")
        assert (stale.status, stale.headers.get("x-stagewatch-stale")) == (200, "pages")
        assert "first text of a" in stale.text and "PART ONE" not in stale.text
        assert 'data-stale="pages"' in stale.text  # the page says so too, in a banner
        (project.root / "release").touch()
        served.daemon.wait_event("stage.succeeded", mark, stage="pages")
        fresh = served.get("/a.html")
        assert "the new text" in fresh.text and "x-stagewatch-stale" not in fresh.headers
    finally:
        served.daemon.stop()


@pytest.mark.parametrize("then", ["HOLD", "BROKEN"])
def test_a_page_its_stage_removed_is_its_last_good_bytes_while_it_runs_or_after_it_failed(
    project: Project, then: str
) -> None:
    make_site(project)
    served = serve(project, env=SHORT_WAIT)
    try:
        assert "first text of a" in served.get("/a.html").text
        mark = served.daemon.mark()
        project.write("content/a.md", f"the new text\nCLEAN\n{then}\n")  # as a generator that cleans first
        page = project.root / "site" / "a.html"
        served.daemon.wait_event("stage.started", mark, stage="pages")
        if then == "BROKEN":
            served.daemon.wait_event("stage.failed", mark, stage="pages")
        until(lambda: not page.exists(), "the stage has removed the page")
        reply = served.get("/a.html")
        assert (reply.status, reply.headers.get("x-stagewatch-stale")) == (200, "pages")
        assert "first text of a" in reply.text
        if then == "HOLD":
            (project.root / "release").touch()
            served.daemon.wait_event("stage.succeeded", mark, stage="pages")
            assert "the new text" in served.get("/a.html").text
    finally:
        served.daemon.stop()


def test_a_page_still_written_that_never_was_good_is_a_503_that_reloads_itself(project: Project) -> None:
    make_site(project)
    project.write("content/a.md", "broken text\nBROKEN\n")  # a.html is never good before
    served = serve(project, env=SHORT_WAIT)
    try:
        mark = served.daemon.mark()
        project.write("content/a.md", "the new text\nHOLD\n")
        served.daemon.wait_event("stage.started", mark, stage="pages")
        page = project.root / "site" / "a.html"
        until(lambda: page.exists() and "PART ONE" in page.read_text(), "the stage has written half of it")
        busy = served.get("/a.html")
        assert (busy.status, busy.headers.get("retry-after")) == (503, "2")
        assert "PART ONE" not in busy.text and "still being written by stage &quot;pages&quot;" in busy.text
        assert "/_stagewatch/client.js" in busy.text  # the tab reloads once the stage is done
        (project.root / "release").touch()
        served.daemon.wait_event("stage.succeeded", mark, stage="pages")
        assert "the new text" in served.get("/a.html").text
    finally:
        served.daemon.stop()


def test_a_taken_port_is_one_line_and_exit_1(project: Project) -> None:
    make_site(project)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = project.cli("serve", "--port", str(port))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is taken" in lines[0] and "--port 0" in lines[0]
    assert not (project.root / "site").exists()  # nothing ran


def test_bind_to_every_address_works_and_warns(project: Project) -> None:
    make_site(project)
    served = serve(project, "--bind", "0.0.0.0")
    try:
        served.daemon.wait_event("serve.exposed")
        assert "first text of a" in served.get("/a.html").text
        assert served.get("/a.html", {"Host": f"{socket.gethostname()}:{served.port}"}).status == 200
        assert served.get("/a.html", {"Host": "evil.example"}).status == 403
    finally:
        served.daemon.stop()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[serve]\nports = 8000", '[serve]: unknown key "ports" (did you mean "port"?)'),
        ('[serve]\nport = "8000"', '[serve]: "port" must be a whole number from 0 to 65535'),
        ("[serve]\nport = 70000", '[serve]: "port" must be a whole number from 0 to 65535'),
        ("[serve]\nport = true", '[serve]: "port" must be a whole number'),
        ("[serve]\nroot = 3", '[serve]: "root" must be a string, got an integer 3'),
        ('[serve]\nroot = ""', '[serve]: "root" is empty'),
        ('[serve]\nbind = "a b"', '[serve]: "bind" must be a host name or address'),
        ('serve = "yes"', "[serve]: must be a table, got a string"),
        ("[serv]\nport = 1", 'unknown table "serv" (did you mean "serve"?)'),
    ],
)
def test_bad_serve_settings_are_one_line_naming_file_and_key(
    project: Project, table: str, message: str
) -> None:
    project.config(f'{table}\n\n[[stage]]\nname = "a"\ncommand = ["true"]\n')
    # Every command reads the table: check finds it, and build and serve refuse it alike.
    for command in ("check",) if "ports" not in table else ("check", "build", "serve"):
        result = project.cli(command)
        assert result.returncode == 2, (command, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"{project.root / 'stagewatch.toml'}: {message}")


def test_only_serve_imports_aiohttp(project: Project) -> None:
    make_site(project)
    code = (
        "import sys\n"
        "from stagewatch import cli\n"
        "import stagewatch.daemon.shell, stagewatch.serve.site, stagewatch.serve.tabs\n"
        f"for command in ('check', 'build', 'status'):\n"
        f"    cli.main(['--config', {str(project.root / 'stagewatch.toml')!r}, command])\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp was imported'\n"
        "print('clean')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=project.root, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip().endswith("clean"), result.stderr


def test_watch_with_serve_is_serve(project: Project) -> None:
    make_site(project)
    argv = [sys.executable, "-m", "stagewatch", "--config", str(project.root / "stagewatch.toml"),
            "--log-format", "json", "watch", "--serve", "--port", "0"]  # fmt: skip
    with RunningDaemon(project, argv=argv) as daemon:
        url = daemon.events[daemon.wait_event("serve.listening")]["url"]
        daemon.wait_event("watch.idle")
        port = urlsplit(url).port
        assert port is not None
        assert "first text of a" in request(port, "/a.html").text
        assert daemon.stop() == 0


def test_watch_options_of_serve_need_serve(project: Project) -> None:
    make_site(project)
    result = project.cli("watch", "--port", "0")
    assert result.returncode == 2
    assert "--serve" in result.stderr
