"""Files too large to keep in memory, streamed from disk: their ETag, range and If-Range are
decided from the file once it is open (never from a second look at its path), as rules.reply_for
decides them for every file; a file that changes while it is sent is cut short, never finished
as a splice of two versions."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from aiohttp import web

from stagewatch.file_identity import FileIdentity, identity_of
from stagewatch.serve.rules import cache_headers, content_type, reply_for

log = structlog.get_logger(__name__)

T = TypeVar("T")
# Read and sent at a time: all a request holds of the file in memory.
CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Opened:
    """A file open for reading, and which version of it that is."""

    fd: int
    size: int
    version: FileIdentity  # any write or replacement changes it

    @property
    def etag(self) -> str:
        # Not a digest (that reads the whole file); the ctime changes with every write, and no
        # tool can set it back, so another version never has this tag.
        version = self.version
        numbers = (version.ino, version.size, version.mtime_ns, version.ctime_ns)
        return '"' + "-".join(f"{number:x}" for number in numbers) + '"'


def open_file(path: str) -> Opened:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    return Opened(fd, info.st_size, identity_of(info))


def read_at(opened: Opened, offset: int, count: int) -> bytes | None:
    """`count` bytes at `offset`, or None when the file is no longer the version opened (cut,
    rewritten, grown): checked after the read, so no byte of another version is ever sent."""
    data = os.pread(opened.fd, count, offset)
    if len(data) != count or identity_of(os.fstat(opened.fd)) != opened.version:
        return None
    return data


def reset(transport: asyncio.Transport) -> None:
    """End a connection at once with a reset, dropping what the kernel still holds to send on
    it: a client that does not read would otherwise keep a send buffer of it for minutes."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _in_thread(work: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, work, *args)


async def stream_file(request: web.Request, path: str, status: int = 200) -> web.StreamResponse:
    """The file at `path`, or the part of it asked for, read on worker threads CHUNK at a time."""
    opened = await _in_thread(open_file, path)
    try:
        headers = {
            **cache_headers(False, opened.etag),
            "Content-Type": content_type(path),
            "Accept-Ranges": "bytes",
        }
        reply = reply_for(
            status,
            opened.size,
            opened.etag,
            request.headers.get("If-None-Match"),
            request.headers.get("Range"),
            request.headers.get("If-Range"),
        )
        if reply.status in (304, 416):
            if reply.status == 416:
                headers["Content-Range"] = f"bytes */{opened.size}"
            return web.Response(status=reply.status, headers=headers)
        offset, count = 0, opened.size
        if reply.part is not None:
            offset, count = reply.part.start, reply.part.length
            headers["Content-Range"] = f"bytes {reply.part.start}-{reply.part.end}/{opened.size}"
        response = web.StreamResponse(status=reply.status, headers=headers)
        response.content_length = count
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        start, end = offset, offset + count
        while offset < end:
            chunk = await _in_thread(read_at, opened, offset, min(CHUNK, end - offset))
            if chunk is None:
                # Its length is promised: only a cut connection tells the client it has not
                # got the file (and a resume with this ETag then gets the whole new one).
                log.warning("serve.changed_while_sent", path=path, sent_bytes=offset - start)
                if request.transport is not None:
                    reset(request.transport)
                return response
            try:
                await response.write(chunk)
            except ConnectionError:  # the client went away: nothing is left to send
                return response
            offset += len(chunk)
        return response
    finally:
        os.close(opened.fd)  # a regular file's close is no slower than a stat
