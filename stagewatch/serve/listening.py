"""The preview's listening socket, bound before the daemon starts: a port that is taken is one
line and exit status 1, never a traceback from inside the loop."""

from __future__ import annotations

import errno
import socket

from stagewatch.errors import StagewatchError, UsageError


def listen(bind: str, port: int, where: str) -> socket.socket:
    """A listening TCP socket on bind:port (port 0: any free port). `where` says how to choose
    another in an error ("--port N or [serve] port in stagewatch.toml")."""
    try:
        infos = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--bind {bind}: not an address or a known host name ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        shown = f"[{bind}]" if ":" in bind else bind
        if exc.errno == errno.EADDRINUSE:
            raise StagewatchError(
                f"port {port} on {shown} is taken (another server?): choose another with {where},"
                " or --port 0 for any free port"
            ) from None
        if exc.errno == errno.EACCES:
            raise StagewatchError(
                f"port {port} on {shown}: permission denied (ports below 1024 need privileges):"
                f" choose another with {where}"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"--bind {bind}: not an address of this machine") from None
        raise StagewatchError(f"cannot listen on {shown}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket, bind: str) -> str:
    """The URL a person opens: the port actually bound, and a name a browser reaches."""
    port = sock.getsockname()[1]
    host = "127.0.0.1" if bind in ("0.0.0.0", "") else ("[::1]" if bind == "::" else bind)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"
