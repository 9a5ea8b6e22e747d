"""`stagewatch serve` and tabs that misbehave: one that stops reading (a page paused in a
debugger, a hung client), many at once, one that comes and goes. A real daemon, real sockets
spoken byte by byte; what the daemon logs says what it did."""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import struct
import termios
import time
from collections.abc import Iterator

import pytest

from tests.helpers.project import Project
from tests.helpers.serve import Served, make_site, serve, until, ws_frame, ws_open, ws_receive, ws_send

pytestmark = pytest.mark.timeout(60)

# A stop of a serve with nothing running takes well under a second; this is its bound.
STOP_S = 5.0
# What a tab that stops reading is given as its receive buffer: it fills at once.
SMALL_BUFFER = 4096


def loud_failures(project: Project, stages: int, line_bytes: int) -> int:
    """A site, and `stages` stages that each fail with 20 lines of `line_bytes` on stderr (the
    failure every tab is told of, tail included); returns what one failures message weighs."""
    project.write("loud.txt", "".join(f"{index:02d}" + "x" * (line_bytes - 2) + "\n" for index in range(20)))
    project.write("trigger.txt", "1")
    loud = "".join(
        f"""
        [[stage]]
        name = "loud-{index}"
        command = ["sh", "-c", "cat loud.txt >&2; exit 3"]
        inputs = ["loud.txt", "trigger.txt"]
        outputs = ["out/loud-{index}.txt"]
        """
        for index in range(stages)
    )
    project.config(
        f"""
        [pipeline]
        debounce = "50ms"

        [serve]
        root = "site"

        [[stage]]
        name = "site"
        command = ["sh", "-c", "mkdir -p site && echo '<p>home' > site/index.html"]
        outputs = ["site/index.html"]
        {loud}
        """
    )
    return stages * 20 * line_bytes


def kernel_buffers_bytes() -> int:
    """The most the kernel holds between the server and a tab that reads nothing: the server's
    largest send buffer and the tab's small receive buffer (doubled by the kernel)."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
        send_max = int(wmem.read().split()[2])
    return send_max + 2 * SMALL_BUFFER


def waiting_bytes(sock: socket.socket) -> int:
    """What the tab's receive buffer holds, unread."""
    found = fcntl.ioctl(sock.fileno(), termios.FIONREAD, struct.pack("i", 0))
    return int(struct.unpack("i", found)[0])


def read_until_closed(sock: socket.socket, timeout: float = 20.0) -> int:
    """Read everything until the server has closed (or reset) the connection; the bytes read."""
    deadline = time.monotonic() + timeout
    total = 0
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return total
        if not chunk:
            return total
        total += len(chunk)
    raise AssertionError(f"the server did not close the connection within {timeout}s (read {total} bytes)")


def stop_promptly(served: Served) -> float:
    started = time.monotonic()
    code = served.daemon.stop(timeout=STOP_S * 3)
    took = time.monotonic() - started
    assert code == 0
    return took


def test_a_tab_that_stops_reading_is_dropped_and_holds_a_bounded_backlog(project: Project) -> None:
    stages = 40
    message_bytes = loud_failures(project, stages, line_bytes=500)
    held = kernel_buffers_bytes() + message_bytes  # the most that may reach it, in flight
    assert stages * message_bytes > 3 * held
    served = serve(project)
    try:
        with ws_open(served.port, receive_buffer=SMALL_BUFFER) as stuck:
            ws_send(stuck, json.dumps({"type": "hello", "page": "/"}))
            mark = served.daemon.mark()
            project.write("trigger.txt", "2")  # every loud stage runs and fails again: a broadcast each
            dropped = served.daemon.events[served.daemon.wait_event("serve.tab_dropped", mark)]
            assert dropped["page"] == "/"
            # What reached it is what the kernel held, not the MiB broadcast meanwhile.
            assert read_until_closed(stuck) <= held
        assert stop_promptly(served) < STOP_S
    finally:
        served.daemon.__exit__()


def test_a_stop_does_not_wait_for_a_tab_whose_buffer_is_full(project: Project) -> None:
    message_bytes = loud_failures(project, stages=12, line_bytes=30_000)
    assert message_bytes > 1.5 * kernel_buffers_bytes()  # the server holds what the kernel cannot
    served = serve(project)
    try:
        with ws_open(served.port, receive_buffer=SMALL_BUFFER) as stuck:
            ws_send(stuck, json.dumps({"type": "hello", "page": "/"}))
            # Its welcome (a few bytes), then the failures it is told of at once: they fill it.
            until(lambda: waiting_bytes(stuck) > 1024, "the tab's receive buffer fills")
            assert stop_promptly(served) < STOP_S
    finally:
        served.daemon.__exit__()


def test_a_tab_that_reads_is_told_every_failure(project: Project) -> None:
    loud_failures(project, stages=3, line_bytes=100)
    served = serve(project)
    try:
        with ws_open(served.port) as tab:
            ws_send(tab, json.dumps({"type": "hello", "page": "/"}))
            assert json.loads(ws_receive(tab)[1]) == {"type": "welcome"}
            told = json.loads(ws_receive(tab)[1])
            assert told["type"] == "failures"
            assert sorted(failure["stage"] for failure in told["failures"]) == ["loud-0", "loud-1", "loud-2"]
        assert stop_promptly(served) < STOP_S
    finally:
        served.daemon.__exit__()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One serve for the tests that only talk to it; each checks what it logged meanwhile."""
    project = Project(tmp_path_factory.mktemp("tabs"))
    make_site(project)
    served = serve(project)
    try:
        yield served
    finally:
        served.daemon.stop()


@pytest.mark.parametrize(
    ("payload", "opcode", "welcomed"),
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, 0x1, 0, id="nested deeper than json.loads recurses"),
        pytest.param(b"\x00\x01", 0x2, 0, id="binary"),
        pytest.param(b"not json at all", 0x1, 0, id="not JSON"),
        pytest.param(b"[1, 2, 3]", 0x1, 0, id="not an object"),
        pytest.param(
            json.dumps({"type": "hello", "page": 5, "loaded": "/a"}).encode(), 0x1, 0, id="bad hello"
        ),
        pytest.param(
            json.dumps({"type": "loaded", "loaded": ["/a.html"]}).encode(), 0x1, 0, id="loaded first"
        ),
        pytest.param(
            b'{"type": "hello", "page": "/a.html", "loaded": [1, null, "/../x", "//e"]}',
            0x1,
            1,
            id="hello loading nonsense",
        ),
    ],
)
def test_a_tab_that_sends_garbage_is_still_answered_and_nothing_breaks(
    site: Served, payload: bytes, opcode: int, welcomed: int
) -> None:
    mark = site.daemon.mark()
    with ws_open(site.port) as tab:
        tab.sendall(ws_frame(payload, opcode))
        ws_send(tab, json.dumps({"type": "hello", "page": "/a.html"}))
        welcomes = 0
        while welcomes < welcomed + 1:  # its garbage's, if it was a hello, then its own
            welcomes += json.loads(ws_receive(tab)[1]) == {"type": "welcome"}
    assert not [event for event in site.daemon.events[mark:] if event.get("level") == "error"]
    assert "Traceback" not in "".join(site.daemon.stderr)


def open_files(served: Served) -> int:
    return len(os.listdir(f"/proc/{served.daemon.proc.pid}/fd"))


def test_tabs_that_come_and_go_leave_nothing_behind(project: Project) -> None:
    make_site(project)
    served = serve(project)
    try:
        before = open_files(served)
        for index in range(200):  # closed before, during and after their hello and its welcome
            with ws_open(served.port) as tab:
                if index % 3:
                    ws_send(tab, json.dumps({"type": "hello", "page": "/a.html", "loaded": ["/style.css"]}))
                if index % 3 == 2:
                    ws_receive(tab)
        until(lambda: open_files(served) <= before, "every closed tab's socket is closed")
        with ws_open(served.port) as tab:  # and a tab now is followed as any
            ws_send(tab, json.dumps({"type": "hello", "page": "/a.html", "loaded": ["/style.css"]}))
            assert json.loads(ws_receive(tab)[1]) == {"type": "welcome"}
            project.write("styles/style.css", "p { color: red; }\n")
            assert json.loads(ws_receive(tab)[1]) == {"type": "css", "paths": ["/style.css"]}
        assert stop_promptly(served) < STOP_S
    finally:
        served.daemon.__exit__()
    assert not [event for event in served.daemon.events if event.get("level") == "error"]


def test_many_tabs_are_each_told_of_a_round_and_a_stop_is_prompt(project: Project) -> None:
    make_site(project)
    served = serve(project)
    tabs = [ws_open(served.port) for _ in range(150)]
    try:
        for tab in tabs:
            ws_send(tab, json.dumps({"type": "hello", "page": "/a.html", "loaded": ["/style.css"]}))
        for tab in tabs:
            assert json.loads(ws_receive(tab)[1]) == {"type": "welcome"}
        project.write("styles/style.css", "p { color: red; }\n")
        for tab in tabs:
            assert json.loads(ws_receive(tab)[1]) == {"type": "css", "paths": ["/style.css"]}
        assert stop_promptly(served) < STOP_S
        for tab in tabs:  # each is told the server went away (and reconnects to the next)
            opcode, payload = ws_receive(tab)
            assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1001)
    finally:
        for tab in tabs:
            tab.close()
        served.daemon.__exit__()


def test_a_tab_on_a_page_its_failed_stage_removed_is_not_reloaded_again_and_again(project: Project) -> None:
    make_site(project)
    served = serve(project)
    try:
        mark = served.daemon.mark()
        project.write("content/a.md", "the new text\nCLEAN\nBROKEN\n")  # gone, and its stage failed
        served.daemon.wait_event("stage.failed", mark, stage="pages")
        served.daemon.wait_event("watch.idle", mark)
        page = served.get("/a.html")
        assert "first text of a" in page.text  # its last good bytes
        served_as = re.search(r'data-identity="([^"]+)"', page.text)
        assert served_as is not None
        with ws_open(served.port) as tab:
            hello = {"type": "hello", "page": "/a.html", "identity": served_as[1], "loaded": ["/style.css"]}
            ws_send(tab, json.dumps(hello))
            assert json.loads(ws_receive(tab)[1]) == {"type": "welcome"}
            assert json.loads(ws_receive(tab)[1])["type"] == "failures"
            # The next word it gets is of the next round (a reload would come first, and again
            # after it: what it shows is not what is on disk, and cannot be until a success).
            project.write("styles/style.css", "p { color: red; }\n")
            assert json.loads(ws_receive(tab)[1]) == {"type": "css", "paths": ["/style.css"]}
    finally:
        served.daemon.stop()
