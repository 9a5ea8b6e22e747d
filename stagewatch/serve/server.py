"""The preview's HTTP server, on the daemon's own loop: it listens to the daemon
(daemon/listener.py), reads it through its view (daemon/view.py), and routes requests to the
site's files (files.py), the tabs' WebSockets (live.py), the live script and the status page.
It alone starts and stops aiohttp.

Routes and the Host check live here; what a file request gets is files.py's, what a tab is told
is live.py's. Nothing here waits on a client: a stop cuts off whatever does not keep up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import webbrowser
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from stagewatch.paths import CACHE_DIR, absolute, posix
from stagewatch.pipeline import SERVE_KEYS
from stagewatch.serve.files import SiteFiles, in_thread
from stagewatch.serve.live import LiveTabs
from stagewatch.serve.pages import CLIENT_PATH, html_response, listing_identity, listing_page, own_page
from stagewatch.serve.rules import allowed_host_names, etag_matches, host_allowed, is_loopback_bind
from stagewatch.serve.site import Found, Kind, SiteRoot, candidates, listing, not_found_page, resolve
from stagewatch.serve.status import (
    PIPELINE_FILE,
    failure_view,
    pipeline_failure_view,
    status_page,
    status_rows,
)
from stagewatch.serve.stream import reset
from stagewatch.serve.tabs import MISSING, identity
from stagewatch.stage import StageState

if TYPE_CHECKING:
    from stagewatch.daemon.view import DaemonView

log = structlog.get_logger(__name__)

# A request still under way at a stop gets this long to end before it is cancelled.
SHUTDOWN_S = 1.0


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
        self.files = SiteFiles()
        self.live = LiveTabs(self.root, self.files)
        self.handling: set[asyncio.BaseTransport] = set()  # connections whose request is under way
        self.tasks: set[asyncio.Task[None]] = set()
        self.client = resources.files("stagewatch.serve").joinpath("client.js").read_bytes()
        self.client_etag = f'"{identity(CLIENT_PATH, self.client)}"'

    # --- the daemon's listener ---

    async def attached(self, daemon: DaemonView) -> None:
        self.daemon = daemon
        self.hidden = (absolute(CACHE_DIR, posix(daemon.pipeline.output_dir)),)
        self.settings = self.told_settings = daemon.pipeline.serve
        self.files.attached(daemon)
        self.live.attached(daemon, self.hidden)
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/_stagewatch/ws", self.live.websocket, allow_head=False)
        app.router.add_get(CLIENT_PATH, self._client)
        app.router.add_get("/_stagewatch/", self._status_page)
        app.router.add_get("/_stagewatch/status.json", self._status_json)
        app.router.add_route("*", "/{path:.*}", self._site)
        self.runner = web.AppRunner(app, access_log=None, logger=_aiohttp_logger())
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock, shutdown_timeout=SHUTDOWN_S).start()
        log.info("serve.listening", url=self.url, root=self.root, why=self.site.why)
        if not self.site.has_index:
            log.warning("serve.no_index", root=self.root, hint="set [serve] root to the folder of your site")
        if not is_loopback_bind(self.bind):
            log.warning(
                "serve.exposed", bind=self.bind, problem="anyone who can reach this machine can read the site"
            )
        if self.open_browser:
            asyncio.get_running_loop().run_in_executor(None, webbrowser.open, self.url)

    def stage_started(self, name: str) -> None:
        self.files.stage_started(name)

    def stage_finished(self, name: str, outcome: StageState) -> None:
        if outcome is StageState.FAILED:
            attempt = self.daemon.recorded().stages.get(name)
            if attempt is not None and self.daemon.pipeline.has_stage(name):
                code = self.daemon.pipeline.stage(name).code_label
                self.live.failed(name, failure_view(name, code, attempt))
        elif outcome is StageState.SUCCEEDED:
            self.live.fixed([name])
            self._spawn(self.files.keep_good_files(name))

    def stages_moved(self) -> None:
        self.files.stages_moved()

    def pipeline_checked(self, problems: tuple[str, ...]) -> None:
        if problems:
            self.live.failed(PIPELINE_FILE, pipeline_failure_view(self.daemon.pipeline.config_path, problems))
        else:
            self.live.fixed([PIPELINE_FILE])

    def round_settled(self) -> None:
        # A stage removed by a reload: nothing of it is left to fix.
        gone = [
            name
            for name in self.live.failures
            if name != PIPELINE_FILE and not self.daemon.pipeline.has_stage(name)
        ]
        self.live.fixed(gone)
        self._say_if_settings_changed()
        self._spawn(self.live.after_round())

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
        self.files.stop()
        await self.live.close()
        self._cut_off_slow_readers()
        for task in list(self.tasks):
            task.cancel()
        await self.runner.cleanup()

    def _cut_off_slow_readers(self) -> None:
        """A response still being made or sent (a download that is not read) is cut off: the
        runner would wait SHUTDOWN_S for its handler, and as long again once it is cancelled."""
        server = self.runner.server
        for connection in server.connections if server is not None else ():
            transport = connection.transport
            if transport is not None and (transport in self.handling or transport.get_write_buffer_size()):
                reset(transport)

    # --- plumbing ---

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("serve.internal_error", error=repr(task.exception()))

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
        await self.files.wait_for_writers(candidates(self.root, url_path), url_path)
        found: Found = await in_thread(resolve, self.root, url_path, self.hidden)
        try:
            if found.kind is Kind.REFUSED:
                log.warning("serve.refused", reason="outside the site folder", path=url_path)
                return own_page(403, "Forbidden", "That path is outside the site folder.")
            if found.kind is Kind.REDIRECT:
                assert found.location is not None
                query = f"?{request.query_string}" if request.query_string else ""
                # One leading slash: "//sub/" would send the browser to the host "sub".
                raise web.HTTPFound("/" + request.rel_url.raw_path.lstrip("/") + "/" + query)
            if found.kind in (Kind.LISTING, Kind.MISSING):
                # A page its stage removed (a generator that cleans its folder first) while it
                # runs again, or after it failed: its last good bytes, as when half-written.
                kept = self.files.kept_instead(candidates(self.root, url_path))
                if kept is not None:
                    return self.files.respond(request, kept)
            if found.kind is Kind.LISTING:
                assert found.path is not None
                entries: list[tuple[str, bool]] = await in_thread(listing, found.path)
                return listing_page(url_path, entries, listing_identity(found.path, entries))
            if found.kind is Kind.MISSING:
                page = await in_thread(not_found_page, self.root)
                if page is not None:
                    return await self.files.file(request, page, status=404)
                return own_page(404, "Not found", f"Nothing at {url_path} in {self.root}.", MISSING)
            assert found.path is not None
            return await self.files.file(request, found.path)
        except OSError as exc:  # gone between the look and the read, or unreadable
            log.warning("serve.unreadable", path=url_path, error=exc.strerror or str(exc))
            return own_page(500, "Cannot read it", f"{url_path}: {exc.strerror or exc}")

    async def _client(self, request: web.Request) -> web.Response:
        headers = {"Cache-Control": "no-cache", "ETag": self.client_etag, "Content-Type": "text/javascript"}
        if etag_matches(request.headers.get("If-None-Match"), self.client_etag):
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.client, headers=headers)

    def _rows(self) -> list[dict[str, Any]]:
        recorded = self.daemon.recorded()
        return status_rows(
            self.daemon.pipeline,
            self.daemon.stage_states(),
            recorded.stages,
            recorded.failures,
            set(self.live.failures),
        )

    def _pipeline_problems(self) -> list[str]:
        invalid = self.live.failures.get(PIPELINE_FILE)
        return [] if invalid is None else list(invalid["tail"])

    async def _status_page(self, request: web.Request) -> web.Response:
        return html_response(status_page(self._rows(), self.root, self._pipeline_problems()).encode(), 200)

    async def _status_json(self, request: web.Request) -> web.Response:
        body = {
            "root": self.root,
            "url": self.url,
            "pipeline_problems": self._pipeline_problems(),
            "stages": self._rows(),
        }
        return web.json_response(body, headers={"Cache-Control": "no-store"})
