"""Which known word a mistyped one meant: typing slips first, then likeness."""

from __future__ import annotations

import pytest

from stagewatch.suggest import closest, typo_distance

SERVE_KEYS = ("root", "port", "bind")
STAGE_KEYS = ("name", "module", "function", "command", "inputs", "outputs", "ttl", "timeout", "after")


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("prot", "port", 1), ("prot", "root", 2), ("", "abc", 3), ("same", "same", 0), ("ab", "ba", 1)],
)
def test_a_swap_of_neighbours_is_one_edit(a: str, b: str, distance: int) -> None:
    assert typo_distance(a, b) == distance
    assert typo_distance(b, a) == distance


@pytest.mark.parametrize(
    ("typed", "known", "meant"),
    [
        ("prot", SERVE_KEYS, "port"),  # a swap, not "root" (two edits, though as alike by difflib)
        ("rot", SERVE_KEYS, "root"),
        ("bnid", SERVE_KEYS, "bind"),
        ("input", STAGE_KEYS, "inputs"),
        ("otuputs", STAGE_KEYS, "outputs"),
        ("Module", STAGE_KEYS, "module"),
        ("timout", STAGE_KEYS, "timeout"),
        ("cmd", STAGE_KEYS, "command"),  # no slip, but alike
        ("commnd", STAGE_KEYS, "command"),
        ("xyz", STAGE_KEYS, None),
        ("anything", (), None),
    ],
)
def test_the_closest_known_word(typed: str, known: tuple[str, ...], meant: str | None) -> None:
    assert closest(typed, known) == meant
