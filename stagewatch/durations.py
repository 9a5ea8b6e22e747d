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


_YEAR_S = 365 * 86400
_SHOWN_UNITS = (("y", _YEAR_S), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_MOST_PARTS = 3
_LONGEST_YEARS = 10_000


def format_duration(seconds: float) -> str:
    """A short human form, up to three units: "0.8s", "42s", "3m 20s", "1d 1h 1m", "1y 40d 2h".

    The value is rounded to the smallest unit shown, so 30 days less a second is "30d", not
    "29d 23h 59m". A year is 365 days; beyond 10,000 of them the number says nothing more.
    """
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if not math.isfinite(seconds):
        return "forever"
    if round(seconds, 1) < 10:
        return f"{seconds:.1f}s"
    if seconds >= _LONGEST_YEARS * _YEAR_S:
        return f"over {_LONGEST_YEARS}y"
    whole = round(seconds)
    for _ in range(2):  # once more when rounding carried into a larger unit ("23h 59m 59.6s")
        first = next(index for index, (_, size) in enumerate(_SHOWN_UNITS) if whole >= size)
        step = _SHOWN_UNITS[min(first + _MOST_PARTS, len(_SHOWN_UNITS)) - 1][1]
        whole = (whole + step // 2) // step * step
    parts = []
    for unit, size in _SHOWN_UNITS[first : first + _MOST_PARTS]:
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts)
