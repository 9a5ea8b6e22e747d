"""What a SIGHUP means: a controlling terminal's hangup, or a request to reload."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stagewatch.terminal import hangup_stops

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("has_terminal", "sighup_ignored", "stops"),
    [
        (True, False, True),  # in a terminal: closing it stops stagewatch
        (True, True, False),  # nohup: the terminal stays, but its hangup is not meant to stop us
        (False, False, False),  # systemd, setsid: SIGHUP is `systemctl reload`
        (False, True, False),
    ],
)
def test_hangup_stops_only_on_a_terminal_not_ignored(
    has_terminal: bool, sighup_ignored: bool, stops: bool
) -> None:
    assert hangup_stops(has_terminal, sighup_ignored) is stops


# SIGHUP's disposition is inherited: a run under nohup (or a CI that ignores it) must not decide
# the answer, so the probe starts from the default and each test says what it changes.
PROBE = "from stagewatch.terminal import has_controlling_terminal, sighup_stops;"
PROBE += "print(has_controlling_terminal(), sighup_stops())"
AS_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0);"
    " os.execv(sys.executable, [sys.executable, '-c', sys.argv[1]])"
)


DEFAULT_SIGHUP = "import signal; signal.signal(signal.SIGHUP, signal.SIG_DFL);"


def probe(preamble: str = "") -> str:
    """The probe's answer when its stdin is a pty made its controlling terminal."""
    master, slave = os.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", AS_TERMINAL, DEFAULT_SIGHUP + preamble + PROBE],
            stdin=slave, capture_output=True, text=True, start_new_session=True, timeout=20,
        )  # fmt: skip
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_pty_made_the_controlling_terminal_is_seen() -> None:
    assert probe() == "True True"


def test_nohup_on_a_terminal_means_reload() -> None:
    assert probe("import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN);") == "True False"


def test_a_new_session_has_no_controlling_terminal() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, start_new_session=True, timeout=20
    )
    assert proc.stdout.strip() == "False False"
