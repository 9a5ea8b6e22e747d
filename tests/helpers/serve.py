"""A real `stagewatch serve` in a subprocess on a small site, plain HTTP to it, and a tab's
WebSocket spoken byte by byte."""

from __future__ import annotations

import base64
import http.client
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.helpers.daemon import RunningDaemon
from tests.helpers.project import Project

# Renders content/<name>.md to site/<name>.html: its first line is the page's text. A line
# BROKEN fails the stage (after some output); a line SLOW writes the page in two halves, a
# second apart, so a request can come in between; a line HOLD writes its first half, then
# waits for the file `release` (which it removes) before the second; a line TRACEBACK fails
# it with a Python traceback a dozen frames deep (a long output tail, an exception line last);
# a line CLEAN removes the page first, as a generator that cleans its output folder does (and
# with HOLD, waits for `release` before it writes anything).
RENDER = r"""
import os, pathlib, sys, time
site = pathlib.Path("site")
site.mkdir(exist_ok=True)


def wait_for_release():
    deadline = time.monotonic() + 60
    while not os.path.exists("release") and time.monotonic() < deadline:
        time.sleep(0.01)
    pathlib.Path("release").unlink(missing_ok=True)


def parse_front_matter(source, depth):
    if depth:
        return parse_front_matter(source, depth - 1)
    raise ValueError(f"{source}: bad front matter, expected a line '---' before line 3")


for source in sorted(pathlib.Path("content").glob("*.md")):
    text = source.read_text()
    target = site / (source.stem + ".html")
    if "CLEAN" in text:
        target.unlink(missing_ok=True)
        if "HOLD" in text:
            wait_for_release()
    if "TRACEBACK" in text:
        for section in range(15):
            print(f"render: {source}: reading section {section}", file=sys.stderr)
        parse_front_matter(source, 12)
    if "BROKEN" in text:
        print(f"render: reading {source}")
        print(f"render: {source} has a BROKEN line, giving up", file=sys.stderr)
        sys.exit(3)
    first = text.splitlines()[0] if text.strip() else ""
    head = ('<!doctype html><html><head><meta charset="utf-8"><title>' + source.stem + '</title>'
            '<link rel="stylesheet" href="style.css"></head><body>')
    body = f'<p id="text">{first}</p><div style="height: 4000px">tall</div><p id="end">end</p></body></html>'
    with open(target, "w") as out:
        out.write(head)
        if "SLOW" in text:
            out.write("<p>PART ONE</p>")
            out.flush()
            time.sleep(1.5)
        if "HOLD" in text and "CLEAN" not in text:
            out.write("<p>PART ONE</p>")
            out.flush()
            wait_for_release()
        out.write(body)
"""

SITE_CONFIG = f"""
[pipeline]
debounce = "50ms"

[serve]
root = "site"

[[stage]]
name = "pages"
command = ["{sys.executable}", "render.py"]
inputs = ["content/"]
outputs = ["site/a.html", "site/b.html"]

[[stage]]
name = "css"
command = ["sh", "-c", "mkdir -p site && cp styles/style.css site/style.css"]
inputs = ["styles/style.css"]
outputs = ["site/style.css"]
"""


def make_site(project: Project) -> None:
    project.write("render.py", RENDER)
    project.write("content/a.md", "first text of a\n")
    project.write("content/b.md", "first text of b\n")
    project.write("styles/style.css", "p { color: rgb(0, 0, 255); }\n")
    project.config(SITE_CONFIG)


# A file larger than those the preview keeps in memory: streamed from disk.
BIG = 9 * 1024 * 1024
MAKE_BIG = """
import pathlib
site = pathlib.Path("site")
site.mkdir(exist_ok=True)
(site / "big.bin").write_bytes({fill!r} * BIG)
""".replace("BIG", str(BIG))

# How long a request waits for a busy stage, made short: what comes after the wait is seen at once.
SHORT_WAIT = {"STAGEWATCH_SERVE_WAIT_S": "0.3"}


def serve_made_site(project: Project, make: str) -> Served:
    """Serve the folder `site/` that one stage makes by running the Python code `make`."""
    project.write("make.py", make)
    project.config(
        f"""
        [serve]
        root = "site"

        [[stage]]
        name = "site"
        command = ["{sys.executable}", "make.py"]
        inputs = ["make.py"]
        outputs = ["site/"]
        """
    )
    return serve(project)


@dataclass
class Served:
    """A `stagewatch serve` and where it listens."""

    daemon: RunningDaemon
    url: str

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
        return request(self.port, path, headers, method)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
    """One HTTP request with exactly these headers (Host included, if given) and the path as is."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        given = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in given.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        connection.close()


def until(fact: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait for a fact about files (no event says it), looking every few milliseconds, with a deadline."""
    deadline = time.monotonic() + timeout
    while not fact():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.005)


def serve(project: Project, *args: str, env: dict[str, str] | None = None) -> Served:
    """Start `stagewatch serve --port 0` on the project; return once it listens and has caught up."""
    daemon = RunningDaemon(
        project,
        argv=[sys.executable, "-m", "stagewatch", "--config", str(project.root / "stagewatch.toml"),
              "--log-format", "json", "serve", "--port", "0", *args],
        env=env,
    )  # fmt: skip
    try:
        listening = daemon.events[daemon.wait_event("serve.listening")]
        daemon.wait_event("watch.idle")
    except BaseException:
        daemon.__exit__()
        raise
    return Served(daemon, listening["url"])


# --- a tab over a raw WebSocket -------------------------------------------------------------


def ws_open(port: int, receive_buffer: int | None = None) -> socket.socket:
    """A WebSocket to the preview, upgraded; `receive_buffer` sets SO_RCVBUF before it connects
    (a small one fills at once when the tab stops reading)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /_stagewatch/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{port}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def ws_frame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    """One masked frame, as a browser sends it."""
    mask = os.urandom(4)
    if len(payload) < 126:
        length = bytes([0x80 | len(payload)])
    elif len(payload) < 65536:
        length = bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    else:
        length = bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode]) + length + mask + masked


def ws_send(sock: socket.socket, text: str) -> None:
    """One masked text frame."""
    sock.sendall(ws_frame(text.encode()))


def ws_receive(sock: socket.socket) -> tuple[int, bytes]:
    """The next frame from the server: (opcode, payload)."""

    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", exactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", exactly(8))[0]
    return first & 0x0F, exactly(length)
