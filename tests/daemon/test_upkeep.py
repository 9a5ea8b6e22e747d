"""The watches' upkeep: which folders are watched already, and what trouble renews."""

from __future__ import annotations

from stagewatch.daemon.upkeep import renewed_after, within_wanted


def test_a_folder_is_within_the_wanted_when_named_or_below_a_recursive_one() -> None:
    wanted = {"/p/src": True, "/p/conf": False}
    assert within_wanted("/p/src", wanted)
    assert within_wanted("/p/src/deep/er", wanted)
    assert within_wanted("/p/conf", wanted)
    assert not within_wanted("/p/conf/below", wanted)  # not recursive
    assert not within_wanted("/p", wanted)
    assert not within_wanted("/", {})


def test_an_overflow_renews_every_watch_and_other_trouble_none() -> None:
    watched = {"/p/src": True, "/p": False}
    assert renewed_after("overflow", watched) == ("/p/src", "/p")
    assert renewed_after("watch-limit", watched) == ()
