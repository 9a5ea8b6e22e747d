"""The preview's HTTP server, on the daemon's own loop: the site's files as their stages finish
them, the live tabs, the status page. With stream.py, the only module that imports aiohttp.

It listens to the daemon (daemon/listener.py): a request for a file that a busy stage writes
waits for it, a failed stage's last good bytes are served, and a settled round tells each tab
what changed for it. File reads, folder walks and digests run on worker threads: the loop is
the daemon's, and does nothing slower than a `stat` (DESIGN §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import os
import posixpath
import socket
import webbrowser
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import structlog
from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from stagewatch.daemon.events import BUSY, SlotState
from stagewatch.paths import CACHE_DIR, absolute, posix
from stagewatch.serve.outbox import Outbox
from stagewatch.serve.rules import (
    allowed_host_names,
    cache_headers,
    content_type,
    etag_matches,
    host_allowed,
    html_content_type,
    inject,
    is_html,
    is_loopback_bind,
    reply_for,
    same_origin,
)
from stagewatch.serve.settings import SERVE_KEYS
from stagewatch.serve.site import (
    Found,
    Kind,
    SiteRoot,
    candidates,
    listing,
    not_found_page,
    resolve,
    writers_of,
)
from stagewatch.serve.status import failure_view, status_page, status_rows
from stagewatch.serve.stream import stream_file
from stagewatch.serve.tabs import (
    MISSING,
    UNFINISHED,
    Identities,
    Reload,
    SwapStylesheets,
    Tab,
    after_round,
    identity,
)
from stagewatch.stage import StageState

if TYPE_CHECKING:
    from stagewatch.daemon.shell import Daemon

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
# What a tab may say it loaded, at most: a page is not a crawler.
MAX_URLS = 2000
# A tab's message, at most (MAX_URLS long URLs); a longer one closes its socket (1009).
MAX_MESSAGE_BYTES = 1024 * 1024
CLIENT_PATH = "/_stagewatch/client.js"
# A stop tells the tabs that keep up (a close frame; they reconnect to the next serve by
# themselves), waiting this long at most for their answers; the others are cut off.
CLOSE_WAIT_S = 0.5


# A file's bytes and their identity (tabs.identity).
Identified = tuple[bytes, str]


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


class AiohttpToLog(logging.Handler):
    """aiohttp's own complaints as one event each: a malformed request is the client's (one
    line), anything else is ours (its traceback in the event). Unhandled, logging's last resort
    printed a traceback on stderr for every junk request."""

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            log.warning("serve.bad_request", status=error.code, error=error.message.splitlines()[0][:200])
        elif record.levelno >= logging.ERROR:
            log.error("serve.internal_error", message=record.getMessage(), exc_info=record.exc_info)
        else:
            log.debug("serve.aiohttp", message=record.getMessage())


def _aiohttp_logger() -> logging.Logger:
    logger = logging.getLogger("stagewatch.serve.aiohttp")
    if not logger.handlers:
        logger.addHandler(AiohttpToLog())
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
    return logger


class Preview:
    """The live preview of one pipeline's site, beside its daemon."""

    def __init__(self, sock: socket.socket, url: str, site: SiteRoot, bind: str, open_browser: bool) -> None:
        self.sock = sock
        self.url = url
        self.site = site
        self.root = site.path
        self.bind = bind
        self.names = allowed_host_names(bind, (socket.gethostname(), socket.getfqdn()))
        self.open_browser = open_browser
        self.moved = asyncio.Event()
        self.stopping = False
        self.tabs: dict[web.WebSocketResponse, Tab] = {}  # the tabs followed (their hello is in)
        self.sockets: dict[web.WebSocketResponse, Outbox] = {}  # every open WebSocket
        self.handling: set[asyncio.BaseTransport] = set()  # connections whose request is under way
        self.failures: dict[str, dict[str, Any]] = {}
        self.served: dict[str, str] = {}  # file -> identity of the bytes last served
        self.good = LastGood()
        self.starts: dict[str, int] = {}  # stage -> runs started, to tell a read across a start
        self.identities = Identities()
        self.round_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        self.client = resources.files("stagewatch.serve").joinpath("client.js").read_bytes()
        self.client_etag = f'"{identity(CLIENT_PATH, self.client)}"'
        self.wait_cap_s = _wait_cap_s(os.environ.get(WAIT_ENV))

    # --- the daemon's listener ---

    async def attached(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.loop = asyncio.get_running_loop()
        self.hidden = (absolute(CACHE_DIR, posix(daemon.pipeline.output_dir)),)
        self.settings = self.told_settings = daemon.pipeline.serve
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/_stagewatch/ws", self._websocket, allow_head=False)
        app.router.add_get(CLIENT_PATH, self._client)
        app.router.add_get("/_stagewatch/", self._status_page)
        app.router.add_get("/_stagewatch/status.json", self._status_json)
        app.router.add_route("*", "/{path:.*}", self._site)
        self.runner = web.AppRunner(app, access_log=None, logger=_aiohttp_logger())
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock, shutdown_timeout=1.0).start()
        log.info("serve.listening", url=self.url, root=self.root, why=self.site.why)
        if not self.site.has_index:
            log.warning("serve.no_index", root=self.root, hint="set [serve] root to the folder of your site")
        if not is_loopback_bind(self.bind):
            log.warning(
                "serve.exposed", bind=self.bind, problem="anyone who can reach this machine can read the site"
            )
        if self.open_browser:
            self.loop.run_in_executor(None, webbrowser.open, self.url)

    def stage_started(self, name: str) -> None:
        # Requests learn of it from stage_states(); a read of its files under way is void.
        self.starts[name] = self.starts.get(name, 0) + 1

    def stage_finished(self, name: str, outcome: StageState) -> None:
        if outcome is StageState.FAILED:
            attempt = self.daemon.recorder.state.stages.get(name)
            if attempt is not None and self.daemon.pipeline.has_stage(name):
                code = self.daemon.pipeline.stage(name).code_label
                self.failures[name] = failure_view(name, code, attempt)
                self._broadcast_failures()
        elif outcome is StageState.SUCCEEDED:
            if self.failures.pop(name, None) is not None:
                self._broadcast_failures()
            self._spawn(self._keep_good_files(name))

    async def _keep_good_files(self, name: str) -> None:
        """After a success, the stage's files as they are now are its last good bytes: a page
        first asked for after a later failure is served as the success left it."""
        if not self.daemon.pipeline.has_stage(name):
            return
        root = posix(self.daemon.pipeline.output_dir)
        outputs = [absolute(output, root) for output in self.daemon.pipeline.stage(name).outputs]
        starts = self.starts.get(name, 0)
        files = await self._in_thread(_read_outputs, outputs)
        if self.starts.get(name, 0) != starts:
            return  # it started again while they were read: they may be half-written
        for path, file in files.items():
            self.good.keep(path, file)

    def stages_moved(self) -> None:
        self.moved.set()
        self.moved = asyncio.Event()

    def round_settled(self) -> None:
        gone = [name for name in self.failures if not self.daemon.pipeline.has_stage(name)]
        for name in gone:  # removed by a reload: nothing of it is left to fix
            del self.failures[name]
        if gone:
            self._broadcast_failures()
        self._say_if_settings_changed()
        self._spawn(self._after_round())

    def _say_if_settings_changed(self) -> None:
        """The folder and the socket are chosen at start: a reloaded [serve] table that differs
        is said once, or the person who changed it looks at the old site wondering why."""
        now = self.daemon.pipeline.serve
        if now == self.told_settings:
            return
        self.told_settings = now
        changed = [key for key in SERVE_KEYS if getattr(now, key) != getattr(self.settings, key)]
        if changed:
            log.warning(
                "serve.restart_needed", changed=changed, hint="the preview reads [serve] at start: restart it"
            )

    async def detached(self) -> None:
        self.stopping = True
        self.moved.set()
        # Nothing waits on a client: a tab that keeps up is told, briefly; the rest are cut off.
        told = []
        for ws, outbox in list(self.sockets.items()):
            if outbox.idle:
                outbox.close()
                told.append(asyncio.ensure_future(ws.close(code=1001, message=b"stagewatch stopped")))
            else:
                outbox.cut("stagewatch stopped")
        if told:
            _, late = await asyncio.wait(told, timeout=CLOSE_WAIT_S)
            for close in late:
                close.cancel()
        for outbox in list(self.sockets.values()):
            outbox.cut("stagewatch stopped")
        self._cut_off_slow_readers()
        for task in list(self.tasks):
            task.cancel()
        await self.runner.cleanup()

    def _cut_off_slow_readers(self) -> None:
        """A response still being made or sent (a download that is not read) is cut off: the
        runner would wait a second for its handler, and another once it is cancelled."""
        server = self.runner.server
        for connection in server.connections if server is not None else ():
            transport = connection.transport
            if transport is not None and (transport in self.handling or transport.get_write_buffer_size()):
                transport.abort()

    # --- plumbing ---

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("serve.internal_error", error=repr(task.exception()))

    async def _in_thread(self, work: Callable[..., T], *args: Any) -> T:
        return await self.loop.run_in_executor(None, work, *args)

    def _failed_stages(self) -> set[str]:
        return {name for name, state in self.daemon.stage_states().items() if state is SlotState.FAILED}

    # --- requests ---

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        host = request.headers.get("Host")
        if not host_allowed(host, self.bind, self.names):
            # Another name pointing here is how a web page reaches a local server (DNS rebinding).
            log.warning("serve.refused", reason="host", host=host, path=request.path)
            return web.Response(
                status=403,
                text=f"stagewatch: Host {host!r} is not this server's name; open {self.url}\n",
            )
        transport = request.transport
        if transport is not None:
            self.handling.add(transport)
        try:
            return await handler(request)
        finally:
            if transport is not None:
                self.handling.discard(transport)

    async def _site(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"}, text="GET or HEAD only\n")
        url_path = request.path
        await self._wait_for_writers(candidates(self.root, url_path), url_path)
        found: Found = await self._in_thread(resolve, self.root, url_path, self.hidden)
        try:
            if found.kind is Kind.REFUSED:
                log.warning("serve.refused", reason="outside the site folder", path=url_path)
                return self._page(403, "Forbidden", "That path is outside the site folder.")
            if found.kind is Kind.REDIRECT:
                assert found.location is not None
                query = f"?{request.query_string}" if request.query_string else ""
                # One leading slash: "//sub/" would send the browser to the host "sub".
                raise web.HTTPFound("/" + request.rel_url.raw_path.lstrip("/") + "/" + query)
            if found.kind in (Kind.LISTING, Kind.MISSING):
                # A page its stage removed (a generator that cleans its folder first) while it
                # runs again, or after it failed: its last good bytes, as when half-written.
                kept = self._kept_instead(candidates(self.root, url_path))
                if kept is not None:
                    return self._respond(request, *kept)
            if found.kind is Kind.LISTING:
                assert found.path is not None
                return await self._listing(url_path, found.path)
            if found.kind is Kind.MISSING:
                page = await self._in_thread(not_found_page, self.root)
                if page is not None:
                    return await self._file(request, page, status=404)
                return self._page(404, "Not found", f"Nothing at {url_path} in {self.root}.", MISSING)
            assert found.path is not None
            return await self._file(request, found.path)
        except OSError as exc:  # gone between the look and the read, or unreadable
            log.warning("serve.unreadable", path=url_path, error=exc.strerror or str(exc))
            return self._page(500, "Cannot read it", f"{url_path}: {exc.strerror or exc}")

    async def _wait_for_writers(self, files: Iterable[str], url_path: str) -> None:
        """Never a half-written page: wait while a stage that writes the file (or one upstream
        of it) is running or about to, at most WAIT_CAP_S."""
        pipeline = self.daemon.pipeline
        writers = writers_of(pipeline, files)
        if not writers:
            return
        watched = writers | pipeline.graph.ancestors(writers)
        deadline = self.loop.time() + self.wait_cap_s
        while not self.stopping:
            states = self.daemon.stage_states()
            busy = sorted(name for name in watched if states.get(name) in BUSY)
            if not busy:
                return
            left = deadline - self.loop.time()
            if left <= 0:
                log.warning("serve.waited", path=url_path, stages=busy, waited_s=self.wait_cap_s)
                return
            moved = self.moved
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(moved.wait(), left)

    async def _file(self, request: web.Request, path: str, status: int = 200) -> web.StreamResponse:
        writers = writers_of(self.daemon.pipeline, [path])
        before = self._runs(writers)
        size = (await self._in_thread(os.stat, path)).st_size
        if size > LARGE_FILE:
            writing = self._writing(writers, before)
            if writing:  # no last good copy of a file this large: never a part of it
                return self._unfinished(request.path, writing)
            return await stream_file(request, path, status)
        # Read and digested on a worker thread: the loop does nothing slower than a stat.
        data, served = await self._in_thread(_read_identified, path)
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
        return self._respond(request, path, data, served, status, stale, writing)

    def _kept_instead(self, files: Iterable[str]) -> tuple[str, bytes, str, int, list[str], list[str]] | None:
        """The first of these files that has last good bytes while a stage that writes it runs
        or has failed: what to serve (as _respond takes it) when it is not there to be read."""
        states = self.daemon.stage_states()
        for path in files:
            good = self.good.get(path)
            writers = writers_of(self.daemon.pipeline, [path]) if good is not None else set()
            writing = sorted(name for name in writers if states.get(name) is SlotState.RUNNING)
            failed = sorted(name for name in writers if states.get(name) is SlotState.FAILED)
            if good is not None and (writing or failed):
                return path, good[0], good[1], 200, writing or failed, writing
        return None

    def _respond(
        self,
        request: web.Request,
        path: str,
        data: bytes,
        served: str,
        status: int,
        stale: list[str],
        writing: list[str],
    ) -> web.Response:
        """These bytes of the file as the response; `stale`: the stages they are the last good
        bytes of (said in a header), `writing`: those still writing the file (said on its page)."""
        self.served[path] = served
        said = {STALE_HEADER: ", ".join(stale)} if stale else {}
        if is_html(path):
            # A page served while its stage still writes says so, and reloads once it is done.
            tag = self._tag(UNFINISHED, writing) if writing else self._tag(served)
            return self._html(inject(data, tag), status, html_content_type(data), said)
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
        page = self._page(
            503,
            "Still being written",
            f"{url_path} is still being written by stage {stages};"
            " this page reloads by itself when it is done.",
            UNFINISHED,
        )
        page.headers["Retry-After"] = str(RETRY_AFTER_S)
        return page

    def _tag(self, served: str, stale: Iterable[str] = ()) -> bytes:
        said = f' data-stale="{html.escape(" ".join(stale))}"' if stale else ""
        return f'<script src="{CLIENT_PATH}" data-identity="{served}"{said}></script>'.encode()

    def _html(
        self,
        body: bytes,
        status: int,
        kind: str = "text/html; charset=utf-8",
        said: dict[str, str] | None = None,
    ) -> web.Response:
        headers = {**cache_headers(True, ""), "Content-Type": kind, **(said or {})}
        return web.Response(status=status, body=body, headers=headers)

    def _page(self, status: int, title: str, message: str, served: str = "") -> web.Response:
        """stagewatch's own page (an error, a missing file), with the live script: the tab
        reloads by itself once the page exists."""
        body = (
            f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{status} {html.escape(title)}</title>"
            f"</head>\n<body><h1>{status} {html.escape(title)}</h1><p>{html.escape(message)}</p>"
            f"<p><a href='/_stagewatch/'>stagewatch status</a></p></body></html>\n"
        )
        return self._html(inject(body.encode(), self._tag(served)), status)

    async def _listing(self, url_path: str, folder: str) -> web.Response:
        entries: list[tuple[str, bool]] = await self._in_thread(listing, folder)
        served = _listing_identity(folder, entries)
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
        return self._html(inject(body.encode(), self._tag(served)), 200)

    async def _client(self, request: web.Request) -> web.Response:
        headers = {"Cache-Control": "no-cache", "ETag": self.client_etag, "Content-Type": "text/javascript"}
        if etag_matches(request.headers.get("If-None-Match"), self.client_etag):
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.client, headers=headers)

    def _rows(self) -> list[dict[str, Any]]:
        state = self.daemon.recorder.state
        return status_rows(
            self.daemon.pipeline,
            self.daemon.stage_states(),
            dict(state.stages),
            dict(state.failures),
            set(self.failures),
        )

    async def _status_page(self, request: web.Request) -> web.Response:
        return self._html(status_page(self._rows(), self.root).encode(), 200)

    async def _status_json(self, request: web.Request) -> web.Response:
        body = {"root": self.root, "url": self.url, "stages": self._rows()}
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    # --- tabs ---

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin, host = request.headers.get("Origin"), request.headers.get("Host")
        if not same_origin(origin, host):
            # Another site's page may not listen in on this one, nor learn what it builds.
            log.warning("serve.refused", reason="origin", origin=origin)
            return web.Response(status=403, text="stagewatch: a WebSocket from another origin\n")
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        transport = request.transport

        def cut(why: str) -> None:
            tab = self.tabs.pop(ws, None)
            if not self.stopping:
                log.warning("serve.tab_dropped", page=tab.page if tab else None, why=why)
            if transport is not None:
                transport.abort()  # a close frame would wait behind what it does not read

        self.sockets[ws] = Outbox(ws.send_str, cut)
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                # On a worker thread: a tab's word may be a MiB of JSON, or nested past what
                # json.loads can recurse (a RecursionError, not a ValueError).
                data = await self._in_thread(_parse_message, message.data)
                if isinstance(data, dict):
                    await self._heard(ws, data)
        finally:
            self.tabs.pop(ws, None)
            outbox = self.sockets.pop(ws, None)
            if outbox is not None:
                outbox.close()
        return ws

    async def _heard(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        said = data.get("loaded")
        said = said if isinstance(said, list) else []  # a tab's word is checked, never trusted
        loaded = [url for url in said if isinstance(url, str) and url.startswith("/")]
        if data.get("type") == "hello" and isinstance(data.get("page"), str):
            page = data["page"]
            tab = Tab(page)
            await self._track(tab, loaded[:MAX_URLS])
            given = data.get("identity")
            if isinstance(given, str) and given:
                tab.seen[page] = given  # the bytes it was served, whatever is on disk now
            elif page not in tab.seen:
                await self._track(tab, [page])
            self.tabs[ws] = tab
            self._send(ws, {"type": "welcome"})  # it is followed from here on
            if self.failures:
                self._send(ws, {"type": "failures", "failures": list(self.failures.values())})
            if not self._anything_busy():
                # Back after a restart (or changed while it loaded): what it shows may be old.
                now = await self._identities_now(tab.seen)
                if self.tabs.get(ws) is tab:
                    self._tell_tab(ws, tab, now)
        elif data.get("type") == "loaded" and ws in self.tabs:
            tab = self.tabs[ws]
            await self._track(tab, [url for url in loaded if url not in tab.seen][: MAX_URLS - len(tab.seen)])

    async def _track(self, tab: Tab, urls: list[str]) -> None:
        """What the tab has of each URL: the bytes last served of its file, else those on disk."""
        if not urls:
            return
        files: dict[str, str | None] = await self._in_thread(self._files_of, urls)
        missing = [url for url, path in files.items() if path is None or path not in self.served]
        now = await self._identities_now(missing) if missing else {}
        for url, path in files.items():
            known = self.served.get(path) if path is not None else None
            if known is not None:
                tab.seen[url] = known
            elif url in now:
                tab.seen[url] = now[url]

    def _anything_busy(self) -> bool:
        return any(state in BUSY for state in self.daemon.stage_states().values())

    def _files_of(self, urls: Iterable[str]) -> dict[str, str | None]:
        found = {}
        for url in urls:
            where = resolve(self.root, url, self.hidden)
            found[url] = where.path if where.kind is Kind.FILE else None
        return found

    async def _identities_now(self, urls: Iterable[str]) -> dict[str, str]:
        failed = self._failed_stages()
        pipeline = self.daemon.pipeline
        return await self._in_thread(self._identities_of, list(urls), failed, pipeline)

    def _identities_of(self, urls: list[str], failed: set[str], pipeline: Any) -> dict[str, str]:
        """On a worker thread: each URL's identity now, as serving it would make it; a URL whose
        file a failed stage writes is left out (it is served from its last good bytes)."""
        now = {}
        for url in urls:
            found = resolve(self.root, url, self.hidden)
            if found.kind is Kind.FILE:
                path: str | None = found.path
            elif found.kind is Kind.MISSING:
                path = not_found_page(self.root)
                if path is None:
                    now[url] = MISSING
                    continue
            elif found.kind is Kind.LISTING:
                assert found.path is not None
                try:
                    now[url] = _listing_identity(found.path, listing(found.path))
                except OSError:
                    now[url] = MISSING
                continue
            else:
                now[url] = found.kind.value
                continue
            assert path is not None
            if failed and writers_of(pipeline, [path]) & failed:
                continue
            now[url] = self.identities.of(path)
        return now

    async def _after_round(self) -> None:
        async with self.round_lock:  # rounds are compared in order, one at a time
            if not self.tabs:
                return
            urls = {url for tab in self.tabs.values() for url in tab.seen}
            now = await self._identities_now(urls)
            for ws, tab in list(self.tabs.items()):
                self._tell_tab(ws, tab, now)

    def _tell_tab(self, ws: web.WebSocketResponse, tab: Tab, now: dict[str, str]) -> None:
        decision = after_round(tab, now)
        if isinstance(decision, Reload):
            log.debug("serve.reload", page=tab.page, changed=list(decision.changed))
            self.tabs.pop(ws, None)  # it comes back with a new hello
            self._send(ws, {"type": "reload", "changed": list(decision.changed)})
        elif isinstance(decision, SwapStylesheets):
            log.debug("serve.stylesheets", page=tab.page, changed=list(decision.paths))
            tab.seen.update({url: now[url] for url in decision.paths})
            self._send(ws, {"type": "css", "paths": list(decision.paths)})

    def _broadcast_failures(self) -> None:
        # Made once for every tab: a failure's output tail may weigh a MiB.
        text = json.dumps({"type": "failures", "failures": list(self.failures.values())})
        for ws in list(self.tabs):
            self._post(ws, text)

    def _send(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        self._post(ws, json.dumps(message))

    def _post(self, ws: web.WebSocketResponse, text: str) -> None:
        outbox = self.sockets.get(ws)
        if outbox is not None:
            outbox.post(text)


def _parse_message(text: str) -> object:
    """A tab's message, or None when it is not JSON (or too deep to read)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _read_identified(path: str) -> Identified:
    data = _read(path)
    return data, identity(path, data)


def _read_outputs(outputs: Iterable[str]) -> dict[str, Identified]:
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
                found[path] = _read_identified(path)
            except OSError:
                continue
            total += len(found[path][0])
            if total >= GOOD_BYTES_CAP:
                return found
    return found


def _wait_cap_s(given: str | None) -> float:
    """WAIT_CAP_S, or the shorter wait given (a test's); anything else is WAIT_CAP_S."""
    try:
        wait_s = float(given) if given else WAIT_CAP_S
    except ValueError:
        return WAIT_CAP_S
    return wait_s if 0 <= wait_s <= WAIT_CAP_S else WAIT_CAP_S


def _listing_identity(folder: str, entries: list[tuple[str, bool]]) -> str:
    names = "\n".join(f"{name}{'/' if is_dir else ''}" for name, is_dir in entries)
    return identity(posixpath.join(folder, ""), names.encode("utf-8", "surrogateescape"))
