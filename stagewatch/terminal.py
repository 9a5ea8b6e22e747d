"""Whether stagewatch runs attached to a terminal, which decides what a SIGHUP means
(docs/design.md#sighup-reload-or-hangup)."""

from __future__ import annotations

import os
import signal


def has_controlling_terminal() -> bool:
    """Whether this process has a controlling terminal: /dev/tty opens only when it has one."""
    try:
        # O_NOCTTY: asking must never make a terminal ours; O_NONBLOCK: nor wait on a serial line.
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def hangup_stops(has_terminal: bool, sighup_ignored: bool) -> bool:
    """Whether a SIGHUP is the terminal hanging up (stop) rather than a request to reload.

    It is a hangup only with a controlling terminal; under systemd or setsid there is none, and
    nohup, which leaves the terminal but ignores SIGHUP, says the hangup is not meant to stop us.
    """
    return has_terminal and not sighup_ignored


def sighup_stops() -> bool:
    """hangup_stops for this process; ask before installing a SIGHUP handler (nohup's SIG_IGN is seen)."""
    return hangup_stops(has_controlling_terminal(), signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)
