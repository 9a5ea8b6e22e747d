"""Durations: seconds or "250ms"/"90s"/"15m"/"6h"/"2d" in, seconds out; and a short form for people."""

from __future__ import annotations

import math

import pytest

from stagewatch.durations import format_duration, parse_duration

# --- parse_duration: accepted ------------------------------------------------------------------


def test_integer_is_seconds() -> None:
    assert parse_duration(90) == 90.0


def test_float_is_seconds() -> None:
    assert parse_duration(0.25) == 0.25


def test_zero_is_allowed() -> None:
    assert parse_duration(0) == 0.0


def test_result_is_a_float() -> None:
    assert type(parse_duration(5)) is float


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("90s", 90.0), ("15m", 900.0), ("6h", 21600.0), ("2d", 172800.0)],
    ids=["ms", "s", "m", "h", "d"],
)
def test_each_unit_is_converted_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_fractional_hours_are_allowed() -> None:
    assert parse_duration("1.5h") == 5400.0


def test_fractional_milliseconds_are_allowed() -> None:
    assert parse_duration("0.5ms") == pytest.approx(0.0005)


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_duration("  90s\t\n") == 90.0


def test_space_between_number_and_unit_is_allowed() -> None:
    assert parse_duration("15 m") == 900.0


def test_zero_with_a_unit_is_allowed() -> None:
    assert parse_duration("0s") == 0.0


# --- parse_duration: rejected ------------------------------------------------------------------


def test_negative_number_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"finite number of seconds >= 0, got -1"):
        parse_duration(-1)


def test_negative_string_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"bad duration \"-5s\""):
        parse_duration("-5s")


def test_unknown_unit_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"bad duration \"5x\""):
        parse_duration("5x")


def test_empty_string_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"bad duration \"\""):
        parse_duration("")


def test_blank_string_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"bad duration \"   \""):
        parse_duration("   ")


def test_string_without_a_unit_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"bad duration \"90\""):
        parse_duration("90")


def test_uppercase_unit_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"bad duration \"6H\""):
        parse_duration("6H")


def test_compound_string_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"bad duration \"1h30m\""):
        parse_duration("1h30m")


def test_rejection_shows_the_accepted_forms() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("soon")
    assert str(caught.value) == (
        'bad duration "soon" (use seconds as a number, or "250ms", "90s", "15m", "6h", "2d")'
    )


@pytest.mark.parametrize("value", [True, False], ids=["true", "false"])
def test_booleans_are_rejected(value: bool) -> None:
    with pytest.raises(ValueError, match=rf"expected a duration, got {str(value).lower()}"):
        parse_duration(value)


def test_list_is_rejected() -> None:
    with pytest.raises(ValueError, match=r'expected a duration, got \["90s"\]'):
        parse_duration(["90s"])


def test_none_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"expected a duration, got None"):
        parse_duration(None)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
def test_non_finite_numbers_are_rejected(value: float) -> None:
    with pytest.raises(ValueError, match=r"finite number of seconds >= 0"):
        parse_duration(value)


def test_inf_as_a_string_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"bad duration \"inf\""):
        parse_duration("inf")


def test_string_too_long_for_a_float_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"finite number of seconds >= 0"):
        parse_duration("9" * 400 + "s")


def test_integer_too_large_for_a_float_is_rejected_with_value_error() -> None:
    with pytest.raises(ValueError):
        parse_duration(10**400)


# --- format_duration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0.0s"),
        (0.8, "0.8s"),
        (9.94, "9.9s"),
        (10, "10s"),
        (42, "42s"),
        (59.4, "59s"),
        (59.6, "1m"),
        (60, "1m"),
        (200, "3m 20s"),
        (3599.6, "1h"),
        (3600, "1h"),
        (3659, "1h 59s"),
        (3660, "1h 1m"),
        (3661, "1h 1m 1s"),
        (18120, "5h 2m"),
        (86400, "1d"),
        (90061, "1d 1h 1m"),
        (183600, "2d 3h"),
        (30 * 86400, "30d"),
        (30 * 86400 - 0.5, "30d"),
        (30 * 86400 - 1, "30d"),
        (30 * 86400 - 60, "29d 23h 59m"),
        (365 * 86400, "1y"),
        (3.5e7, "1y 40d 2h"),
        (10 * 365 * 86400 + 3 * 86400, "10y 3d"),
    ],
)
def test_format_duration_shows_up_to_three_units(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1e12, 1e300, 1.7976931348623157e308])
def test_format_duration_of_an_absurd_span_stays_short(seconds: float) -> None:
    assert format_duration(seconds) == "over 10000y"


def test_format_duration_of_a_negative_span_has_a_minus_sign() -> None:
    assert format_duration(-200) == "-3m 20s"


def test_format_duration_of_infinity_is_forever() -> None:
    assert format_duration(float("inf")) == "forever"
