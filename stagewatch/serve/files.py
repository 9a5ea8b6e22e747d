"""The site's files as a request gets them: never a half-written one. A request waits for the
stages that write its file, then gets the bytes on disk, or the last good ones while a stage
rewrites (or removed) the file or after it failed, said stale; with none, a 503 that reloads
itself. Small files are served from memory, large ones streamed (stream.py).

File reads, folder walks and digests run on worker threads: the loop is the daemon's, and does
nothing slower than a `stat` (docs/design.md#the-loop-never-blocks).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from aiohttp import web

from stagewatch.daemon.events import BUSY, SlotState
from stagewatch.paths import absolute, posix
from stagewatch.serve.pages import html_response, own_page, script_tag
from stagewatch.serve.rules import cache_headers, content_type, html_content_type, inject, is_html, reply_for
from stagewatch.serve.site import writers_of
from stagewatch.serve.stream import stream_file
from stagewatch.serve.tabs import UNFINISHED, identity

if TYPE_CHECKING:
    from stagewatch.daemon.view import DaemonView

log = structlog.get_logger(__name__)

T = TypeVar("T")
# A request for a file a busy stage writes waits this long at most; a file still being written
# then is served as its last good bytes, said stale (or a 503 until there are some).
WAIT_CAP_S = 10.0
# The wait made shorter, for the tests (what comes after it is seen without waiting 10 s).
WAIT_ENV = "STAGEWATCH_SERVE_WAIT_S"
# What a 503 for a file still being written tells a client that is not a tab to wait.
RETRY_AFTER_S = 2
# Says a response holds a file's last good bytes, not those on disk; its value: the stages.
STALE_HEADER = "X-Stagewatch-Stale"
# Larger files are streamed from disk (videos, archives; stream.py): no digest, no last good
# copy, and no copy in memory per request (a few clients that never read would hold each).
LARGE_FILE = 8 * 1024 * 1024
# The last good bytes of the stages' files, for when a stage fails: at most this much, in all.
GOOD_BYTES_CAP = 64 * 1024 * 1024
GOOD_FILE_CAP = 8 * 1024 * 1024

# A file's bytes and their identity (tabs.identity).
Identified = tuple[bytes, str]
# What a response is made of (SiteFiles.respond): the file, its bytes, their identity, the
# status, the stages they are the last good bytes of, and those still writing the file.
Chosen = tuple[str, bytes, str, int, list[str], list[str]]


async def in_thread(work: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, work, *args)


class LastGood:
    """The last good bytes of each stage-written file: read after its stage succeeded, or
    served while no stage writing it was busy or failing."""

    def __init__(self) -> None:
        self._files: OrderedDict[str, Identified] = OrderedDict()
        self._size = 0

    def keep(self, path: str, file: Identified) -> None:
        old = self._files.pop(path, None)
        if old is not None:
            self._size -= len(old[0])
        if len(file[0]) > GOOD_FILE_CAP:
            return
        self._files[path] = file
        self._size += len(file[0])
        while self._size > GOOD_BYTES_CAP:
            _, dropped = self._files.popitem(last=False)
            self._size -= len(dropped[0])

    def get(self, path: str) -> Identified | None:
        return self._files.get(path)


class SiteFiles:
    """The site's files, served as their stages finish them."""

    def __init__(self) -> None:
        self.moved = asyncio.Event()  # set (and replaced) whenever the daemon acted
        self.stopping = False
        self.served: dict[str, str] = {}  # file -> identity of the bytes last served
        self.good = LastGood()
        self.starts: dict[str, int] = {}  # stage -> runs started, to tell a read across a start
        self.wait_cap_s = wait_cap_from(os.environ.get(WAIT_ENV))

    def attached(self, daemon: DaemonView) -> None:
        self.daemon = daemon

    # --- what the daemon does ---

    def stage_started(self, name: str) -> None:
        # Requests learn of it from stage_states(); a read of its files under way is void.
        self.starts[name] = self.starts.get(name, 0) + 1

    async def keep_good_files(self, name: str) -> None:
        """After a success, the stage's files as they are now are its last good bytes: a page
        first asked for after a later failure is served as the success left it."""
        if not self.daemon.pipeline.has_stage(name):
            return
        root = posix(self.daemon.pipeline.output_dir)
        outputs = [absolute(output, root) for output in self.daemon.pipeline.stage(name).outputs]
        starts = self.starts.get(name, 0)
        files = await in_thread(read_outputs, outputs)
        if self.starts.get(name, 0) != starts:
            return  # it started again while they were read: they may be half-written
        for path, file in files.items():
            self.good.keep(path, file)

    def stages_moved(self) -> None:
        self.moved.set()
        self.moved = asyncio.Event()

    def stop(self) -> None:
        self.stopping = True
        self.moved.set()

    # --- requests ---

    async def wait_for_writers(self, files: Iterable[str], url_path: str) -> None:
        """Never a half-written page: wait while a stage that writes the file (or one upstream
        of it) is running or about to, at most WAIT_CAP_S."""
        pipeline = self.daemon.pipeline
        writers = writers_of(pipeline, files)
        if not writers:
            return
        watched = writers | pipeline.graph.ancestors(writers)
        deadline = asyncio.get_running_loop().time() + self.wait_cap_s
        while not self.stopping:
            states = self.daemon.stage_states()
            busy = sorted(name for name in watched if states.get(name) in BUSY)
            if not busy:
                return
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("serve.waited", path=url_path, stages=busy, waited_s=self.wait_cap_s)
                return
            moved = self.moved
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(moved.wait(), left)

    async def file(self, request: web.Request, path: str, status: int = 200) -> web.StreamResponse:
        writers = writers_of(self.daemon.pipeline, [path])
        before = self._runs(writers)
        size = (await in_thread(os.stat, path)).st_size
        if size > LARGE_FILE:
            writing = self._writing(writers, before)
            if writing:  # no last good copy of a file this large: never a part of it
                return self._unfinished(request.path, writing)
            return await stream_file(request, path, status)
        # Read and digested on a worker thread: the loop does nothing slower than a stat.
        data, served = await in_thread(read_identified, path)
        stale: list[str] = []
        writing = self._writing(writers, before)
        if writers:
            states = self.daemon.stage_states()
            good = self.good.get(path)
            failed = sorted(name for name in writers if states.get(name) is SlotState.FAILED)
            if writing:  # what was read may be half-written: its last good bytes, said stale
                if good is None:
                    return self._unfinished(request.path, writing)
                (data, served), stale = good, writing
            elif failed:
                if good is not None:  # its last good bytes, and the overlay says why
                    (data, served), stale = good, failed
            elif not any(states.get(name) in BUSY for name in writers):
                self.good.keep(path, (data, served))
        return self.respond(request, (path, data, served, status, stale, writing))

    def kept_instead(self, files: Iterable[str]) -> Chosen | None:
        """The first of these files that has last good bytes while a stage that writes it runs
        or has failed: what to serve when it is not there to be read (its stage removed it)."""
        states = self.daemon.stage_states()
        for path in files:
            good = self.good.get(path)
            writers = writers_of(self.daemon.pipeline, [path]) if good is not None else set()
            writing = sorted(name for name in writers if states.get(name) is SlotState.RUNNING)
            failed = sorted(name for name in writers if states.get(name) is SlotState.FAILED)
            if good is not None and (writing or failed):
                return path, good[0], good[1], 200, writing or failed, writing
        return None

    def respond(self, request: web.Request, chosen: Chosen) -> web.Response:
        """These bytes of the file as the response; said stale (a header) when they are the
        last good bytes of stages, and on its page while stages still write it."""
        path, data, served, status, stale, writing = chosen
        self.served[path] = served
        said = {STALE_HEADER: ", ".join(stale)} if stale else {}
        if is_html(path):
            # A page served while its stage still writes says so, and reloads once it is done.
            tag = script_tag(UNFINISHED, writing) if writing else script_tag(served)
            return html_response(inject(data, tag), status, html_content_type(data), said)
        etag = f'"{served}"'
        headers = {**cache_headers(False, etag), "Content-Type": content_type(path), "Accept-Ranges": "bytes"}
        headers.update(said)
        reply = reply_for(
            status,
            len(data),
            etag,
            request.headers.get("If-None-Match"),
            request.headers.get("Range"),
            request.headers.get("If-Range"),
        )
        if reply.status == 304:
            return web.Response(status=304, headers=headers)
        if reply.status == 416:
            headers["Content-Range"] = f"bytes */{len(data)}"
            return web.Response(status=416, headers=headers)
        if reply.part is not None:
            part = reply.part
            headers["Content-Range"] = f"bytes {part.start}-{part.end}/{len(data)}"
            return web.Response(status=206, body=data[part.start : part.end + 1], headers=headers)
        return web.Response(status=reply.status, body=data, headers=headers)

    def _runs(self, writers: Iterable[str]) -> tuple[set[str], dict[str, int]]:
        """Which of these stages run now, and how many runs each has started."""
        states = self.daemon.stage_states()
        running = {name for name in writers if states.get(name) is SlotState.RUNNING}
        return running, {name: self.starts.get(name, 0) for name in writers}

    def _writing(self, writers: Iterable[str], before: tuple[set[str], dict[str, int]]) -> list[str]:
        """The stages that were writing the file at some moment since `before`: running then,
        running now, or started in between."""
        running_then, starts_then = before
        running_now, starts_now = self._runs(writers)
        started = {name for name, count in starts_now.items() if count != starts_then.get(name, 0)}
        return sorted(running_then | running_now | started)

    def _unfinished(self, url_path: str, writing: list[str]) -> web.Response:
        """A file still being written, with no good bytes to serve instead: never a part of it."""
        stages = ", ".join(f'"{name}"' for name in writing)
        log.warning("serve.unfinished", path=url_path, stages=writing)
        page = own_page(
            503,
            "Still being written",
            f"{url_path} is still being written by stage {stages};"
            " this page reloads by itself when it is done.",
            UNFINISHED,
        )
        page.headers["Retry-After"] = str(RETRY_AFTER_S)
        return page


def read_identified(path: str) -> Identified:
    with open(path, "rb") as file:
        data = file.read()
    return data, identity(path, data)


def read_outputs(outputs: Iterable[str]) -> dict[str, Identified]:
    """The files of these outputs (files, or folders walked), as many as the last good bytes
    may hold; a file that cannot be read is left out."""
    found: dict[str, Identified] = {}
    total = 0
    for output in outputs:
        paths = [output] if os.path.isfile(output) else [
            os.path.join(folder, name) for folder, _, names in os.walk(output) for name in sorted(names)
        ]  # fmt: skip
        for path in paths:
            try:
                if os.path.getsize(path) > GOOD_FILE_CAP:
                    continue
                found[path] = read_identified(path)
            except OSError:
                continue
            total += len(found[path][0])
            if total >= GOOD_BYTES_CAP:
                return found
    return found


def wait_cap_from(given: str | None) -> float:
    """WAIT_CAP_S, or the shorter wait given (a test's); anything else is WAIT_CAP_S."""
    try:
        wait_s = float(given) if given else WAIT_CAP_S
    except ValueError:
        return WAIT_CAP_S
    return wait_s if 0 <= wait_s <= WAIT_CAP_S else WAIT_CAP_S
