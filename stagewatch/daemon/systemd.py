"""sd_notify: tell systemd we are ready, what we are doing, that we are alive, and when we stop.

The protocol is one datagram to the Unix socket named by $NOTIFY_SOCKET (a path, or "@name"
for the abstract namespace). Without that variable every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


def notify_address(value: str | None) -> str | None:
    """The socket address for $NOTIFY_SOCKET: "@name" is the abstract name "\\0name"."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    return value if value.startswith("/") else None


def watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of $WATCHDOG_USEC, when the watchdog is meant for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0 or (owner and owner != str(pid)):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """Sends sd_notify messages; quiet and harmless when not run by systemd."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.address = notify_address(environ.get("NOTIFY_SOCKET"))
        self.watchdog_s = watchdog_interval_s(environ, os.getpid()) if self.address else None
        self._socket: socket.socket | None = None
        self._last_status: str | None = None
        self._warned = False
        self._dropped = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> None:
        if self.address is None:
            return
        try:
            if self._socket is None:
                # Non-blocking: a receiver that does not read (its queue holds ten datagrams)
                # must never stall the loop that sends the watchdog pings.
                kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                self._socket = socket.socket(socket.AF_UNIX, kind)
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except BlockingIOError:
            if not self._dropped:
                self._dropped = True
                log.warning(
                    "systemd.notify_dropped", socket=self.address.replace("\0", "@"), reason="queue full"
                )
        except OSError as exc:
            if not self._warned:  # systemd went away, say: say so once, keep running
                self._warned = True
                log.warning("systemd.notify_failed", socket=self.address.replace("\0", "@"), error=str(exc))

    def ready(self) -> None:
        self.send("READY=1")

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def alive(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
