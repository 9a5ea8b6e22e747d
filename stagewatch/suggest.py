"""Say which known word a mistyped one most likely meant ("did you mean ...?")."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def typo_distance(a: str, b: str) -> int:
    """Edits from a to b, a swap of two neighbours counting as one (`prot` is one from `port`,
    two from `root`): the optimal string alignment distance."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, start=1):
            cost = 0 if char_a == char_b else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def closest(word: str, known: Iterable[str]) -> str | None:
    """The known word `word` was most likely typed for, or None when none is near.

    Typing slips first (a swap, a letter missed, doubled or wrong, case aside): the fewest
    edits win, up to a third of the word's length (at least one). Failing that, the word most
    alike by difflib's measure (`cmd` for `command`).
    """
    candidates = [name for name in dict.fromkeys(known) if name != word]
    if not candidates:
        return None
    folded = word.lower()
    scored = sorted(
        candidates,
        key=lambda name: (
            typo_distance(folded, name.lower()),
            -difflib.SequenceMatcher(None, word, name).ratio(),
        ),
    )
    best = scored[0]
    if typo_distance(folded, best.lower()) <= max(1, len(word) // 3):
        return best
    alike = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return alike[0] if alike else None


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest known word, or "" when none is near."""
    found = closest(word, known)
    return f' (did you mean "{found}"?)' if found is not None else ""
