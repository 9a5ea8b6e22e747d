"""Where a stage stands in people's words: a daemon slot's state, with its last attempt."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagewatch.daemon.events import SlotState
from stagewatch.graph import build_graph
from stagewatch.pipeline import Pipeline
from stagewatch.serve.status import status_page, status_rows
from stagewatch.stage import Stage, StageState
from stagewatch.standing import slot_standing
from stagewatch.state import Attempt

S = SlotState
W = StageState

SLOT_WORDS = [
    # slot, last attempt's result, the word people read
    (S.IDLE, None, W.FRESH),
    (S.IDLE, W.SUCCEEDED, W.FRESH),
    (S.IDLE, W.FAILED, W.FRESH),  # its check found nothing to do: its entry vouches for it
    (S.CANDIDATE, None, W.STALE),
    (S.CANDIDATE, W.SUCCEEDED, W.STALE),
    (S.CANDIDATE, W.FAILED, W.FAILED),
    (S.CHECKING, W.CANCELLED, W.STALE),
    (S.CHECKING, W.FAILED, W.FAILED),
    (S.READY, None, W.STALE),
    (S.READY, W.SUCCEEDED, W.STALE),
    (S.READY, W.FAILED, W.FAILED),
    (S.RUNNING, None, W.RUNNING),
    (S.RUNNING, W.FAILED, W.RUNNING),
    (S.FAILED, W.FAILED, W.FAILED),
    (S.FAILED, W.SUCCEEDED, W.FAILED),  # a check that failed holds it too
    (S.BLOCKED, None, W.BLOCKED),
    (S.BLOCKED, W.FAILED, W.BLOCKED),  # its own failure waits behind the one upstream
    (S.LOOPING, W.SUCCEEDED, W.LOOPING),
]


@pytest.mark.parametrize(("slot", "last", "word"), SLOT_WORDS)
def test_a_slot_is_said_in_the_words_of_status(slot: S, last: W | None, word: W) -> None:
    assert slot_standing(slot, last) is word


def test_every_slot_state_has_a_word() -> None:
    assert {slot for slot, _, _ in SLOT_WORDS} == set(SlotState)
    for slot in SlotState:
        assert slot_standing(slot) in set(StageState)


def attempt(result: StageState) -> Attempt:
    return Attempt(result, "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:01+00:00", 1.0, 1, "exit 1")


def pipeline_of(*stages: Stage) -> Pipeline:
    return Pipeline(Path("/p/stagewatch.toml"), Path("/p"), stages, build_graph(stages, "/p"))


def test_the_preview_rows_keep_the_daemons_word_and_add_the_peoples() -> None:
    pipeline = pipeline_of(
        Stage("make", command=("make",), outputs=("a",)),
        Stage("use", command=("use",), inputs=("a",)),
        Stage("new", command=("new",)),
    )
    rows = status_rows(pipeline, {"make": S.READY, "use": S.IDLE}, {"make": attempt(W.FAILED)}, {})
    assert [(row["name"], row["state"], row["status"]) for row in rows] == [
        ("make", "ready", "failed"),
        ("use", "idle", "fresh"),
        ("new", "unknown", "unknown"),  # no slot yet: a reload adds it a moment later
    ]
    page = status_page(rows, "/site")
    assert '<tr class="ready failed"><td class="name">make</td><td class="state">failed</td>' in page
    assert '<tr class="idle fresh"><td class="name">use</td><td class="state">fresh</td>' in page
