"""Parse durations written as seconds or as "250ms", "90s", "15m", "6h", "2d", and print them back."""

from __future__ import annotations

import datetime
import json
import math
import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*")


def _toml(value: object) -> str:
    """A value as it is written in TOML, for messages about a pipeline file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return repr(value)


def parse_duration(value: object) -> float:
    """Seconds from a non-negative number or a string like "90s"; ValueError says what was wrong."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {_toml(value)}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"duration {_toml(value)} is too large") from None
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise ValueError(
                f'bad duration {_toml(value)} (use seconds as a number, or "250ms", "90s", "15m", "6h", "2d")'
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a duration, got {_toml(value)}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration must be a finite number of seconds >= 0, got {_toml(value)}")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form: "0.8s", "42s", "3m 20s", "5h 2m", "2d 3h"."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if not math.isfinite(seconds):
        return "forever"
    if round(seconds, 1) < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    for unit_s, unit, sub_s, sub in ((86400, "d", 3600, "h"), (3600, "h", 60, "m"), (60, "m", 1, "s")):
        if whole >= unit_s:
            major, rest = divmod(whole, unit_s)
            minor = rest // sub_s
            return f"{major}{unit} {minor}{sub}" if minor else f"{major}{unit}"
    return f"{whole}s"  # pragma: no cover - the loop always returns
