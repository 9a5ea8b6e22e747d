"""systemd's part played in the test: a datagram socket that collects what the daemon notifies."""

from __future__ import annotations

import socket
import time


class NotifySocket:
    """A datagram socket playing systemd's part: it collects what the daemon says."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[tuple[float, str]] = []

    def receive_until(self, predicate: object, timeout: float = 20.0) -> list[str]:
        """Read datagrams until predicate(lines so far) holds; fails at the deadline."""
        deadline = time.monotonic() + timeout
        while not predicate(self.lines()):  # type: ignore[operator]
            left = deadline - time.monotonic()
            assert left > 0, f"not received in time; got {self.lines()}"
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))
        return self.lines()

    def lines(self) -> list[str]:
        return [line for _, line in self.messages]

    def close(self) -> None:
        self.sock.close()
