"""The open tabs, over their WebSockets: which are followed and what each has, what a settled
round or a failure tells each (through its outbox: a tab that does not keep up is cut off), and
letting them go at a stop. A tab's word is checked, never trusted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import structlog
from aiohttp import WSMsgType, web

from stagewatch.daemon.events import BUSY, SlotState
from stagewatch.serve.files import SiteFiles, in_thread
from stagewatch.serve.outbox import Outbox
from stagewatch.serve.pages import listing_identity
from stagewatch.serve.rules import same_origin
from stagewatch.serve.site import Kind, candidates, listing, not_found_page, resolve, writers_of
from stagewatch.serve.stream import reset
from stagewatch.serve.tabs import MISSING, Identities, Reload, SwapStylesheets, Tab, after_round

if TYPE_CHECKING:
    from stagewatch.daemon.view import DaemonView

log = structlog.get_logger(__name__)

# What a tab may say it loaded, at most: a page is not a crawler.
MAX_URLS = 2000
# A tab's message, at most (MAX_URLS long URLs); a longer one closes its socket (1009).
MAX_MESSAGE_BYTES = 1024 * 1024
# A stop tells the tabs that keep up (a close frame; they reconnect to the next serve by
# themselves), waiting this long at most for their answers; the others are cut off.
CLOSE_WAIT_S = 0.5


class LiveTabs:
    """Every open tab of the preview, and what every tab's overlay shows."""

    def __init__(self, root: str, files: SiteFiles) -> None:
        self.root = root
        self.files = files
        self.stopping = False
        self.tabs: dict[web.WebSocketResponse, Tab] = {}  # the tabs followed (their hello is in)
        self.sockets: dict[web.WebSocketResponse, Outbox] = {}  # every open WebSocket
        self.failures: dict[str, dict[str, Any]] = {}  # stage -> its failure, as overlays show it
        self.identities = Identities()
        self.round_lock = asyncio.Lock()

    def attached(self, daemon: DaemonView, hidden: tuple[str, ...]) -> None:
        self.daemon = daemon
        self.hidden = hidden

    # --- what every tab is told ---

    def failed(self, name: str, view: dict[str, Any]) -> None:
        self.failures[name] = view
        self._broadcast_failures()

    def fixed(self, names: Iterable[str]) -> None:
        """These stages succeeded, or are gone: their failures are over."""
        over = [name for name in names if self.failures.pop(name, None) is not None]
        if over:
            self._broadcast_failures()

    async def after_round(self) -> None:
        async with self.round_lock:  # rounds are compared in order, one at a time
            if not self.tabs:
                return
            urls = {url for tab in self.tabs.values() for url in tab.seen}
            now = await self._identities_now(urls)
            for ws, tab in list(self.tabs.items()):
                self._tell_tab(ws, tab, now)

    async def close(self) -> None:
        """Nothing waits on a client: a tab that keeps up is told, briefly; the rest are cut off."""
        self.stopping = True
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

    # --- a tab's WebSocket ---

    async def websocket(self, request: web.Request) -> web.StreamResponse:
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
                reset(transport)  # a close frame would wait behind what it does not read

        self.sockets[ws] = Outbox(ws.send_str, cut)
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                # On a worker thread: a tab's word may be a MiB of JSON, or nested past what
                # json.loads can recurse (a RecursionError, not a ValueError).
                data = await in_thread(_parse_message, message.data)
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
        files: dict[str, str | None] = await in_thread(self._files_of, urls)
        served = self.files.served
        missing = [url for url, path in files.items() if path is None or path not in served]
        now = await self._identities_now(missing) if missing else {}
        for url, path in files.items():
            known = served.get(path) if path is not None else None
            if known is not None:
                tab.seen[url] = known
            elif url in now:
                tab.seen[url] = now[url]

    def _anything_busy(self) -> bool:
        return any(state in BUSY for state in self.daemon.stage_states().values())

    def _files_of(self, urls: Iterable[str]) -> dict[str, str | None]:
        found = {}
        for url in urls:
            where = resolve(self.root, unquote(url), self.hidden)
            found[url] = where.path if where.kind is Kind.FILE else None
        return found

    async def _identities_now(self, urls: Iterable[str]) -> dict[str, str]:
        states = self.daemon.stage_states()
        failed = {name for name, state in states.items() if state is SlotState.FAILED}
        # A URL whose file is gone but served from its last good bytes (its stage removed it,
        # and runs or failed) is left out, as one a failed stage writes: comparing what is
        # served with what is on disk would reload its tab again and again.
        kept = {
            url for url in urls if self.files.kept_instead(candidates(self.root, unquote(url))) is not None
        }
        wanted = [url for url in urls if url not in kept]
        return await in_thread(self._identities_of, wanted, failed, self.daemon.pipeline)

    def _identities_of(self, urls: list[str], failed: set[str], pipeline: Any) -> dict[str, str]:
        """On a worker thread: each URL's identity now, as serving it would make it; a URL whose
        file a failed stage writes is left out (it is served from its last good bytes)."""
        now = {}
        for url in urls:
            found = resolve(self.root, unquote(url), self.hidden)  # a tab says URLs %-encoded
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
                    now[url] = listing_identity(found.path, listing(found.path))
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
