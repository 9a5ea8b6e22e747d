"""Path rules: input kinds, glob matching with "**", labels, and what IgnoreRules leaves out."""

from __future__ import annotations

import random

import pytest

from stagewatch.paths import (
    IgnoreRules,
    PathKind,
    _match,
    classify,
    compile_glob,
    glob_base,
    glob_matches,
    glob_may_match_below,
    label,
    split,
)

ROOT = "/proj"


# --- classify ---


def test_classify_trailing_slash_is_folder() -> None:
    assert classify("content/") is PathKind.FOLDER


def test_classify_plain_path_is_file() -> None:
    assert classify("data/repos.toml") is PathKind.FILE


@pytest.mark.parametrize("pattern", ["content/**/*.md", "*.css", "img/photo?.jpg", "data/[ab].csv"])
def test_classify_wildcard_is_glob(pattern: str) -> None:
    assert classify(pattern) is PathKind.GLOB


def test_classify_temp_like_name_without_wildcards_is_file() -> None:
    assert classify("notes.md~") is PathKind.FILE


# --- glob_matches ---


def test_double_star_matches_zero_folders() -> None:
    assert glob_matches("/proj/content/**/*.md", "/proj/content/a.md")


def test_double_star_matches_one_folder() -> None:
    assert glob_matches("/proj/content/**/*.md", "/proj/content/posts/a.md")


def test_double_star_matches_many_folders() -> None:
    assert glob_matches("/proj/content/**/*.md", "/proj/content/posts/2024/06/a.md")


def test_double_star_does_not_match_outside_its_base() -> None:
    assert not glob_matches("/proj/content/**/*.md", "/proj/static/a.md")


def test_double_star_still_requires_the_last_segment_to_match() -> None:
    assert not glob_matches("/proj/content/**/*.md", "/proj/content/posts/a.txt")


def test_trailing_double_star_matches_everything_below() -> None:
    assert glob_matches("/proj/templates/**", "/proj/templates/partials/head.html")


def test_star_matches_within_one_segment() -> None:
    assert glob_matches("/proj/*.md", "/proj/index.md")


def test_star_does_not_cross_a_folder() -> None:
    assert not glob_matches("/proj/*.md", "/proj/content/index.md")


def test_star_in_a_middle_segment_matches_exactly_one_folder() -> None:
    assert glob_matches("/proj/*/index.md", "/proj/blog/index.md")
    assert not glob_matches("/proj/*/index.md", "/proj/blog/2024/index.md")


def test_question_mark_matches_one_character() -> None:
    assert glob_matches("/proj/img/photo?.jpg", "/proj/img/photo1.jpg")


def test_question_mark_does_not_match_zero_or_two_characters() -> None:
    assert not glob_matches("/proj/img/photo?.jpg", "/proj/img/photo.jpg")
    assert not glob_matches("/proj/img/photo?.jpg", "/proj/img/photo12.jpg")


def test_bracket_matches_a_listed_character() -> None:
    assert glob_matches("/proj/data/[ab].csv", "/proj/data/a.csv")
    assert glob_matches("/proj/data/[ab].csv", "/proj/data/b.csv")


def test_bracket_does_not_match_an_unlisted_character() -> None:
    assert not glob_matches("/proj/data/[ab].csv", "/proj/data/c.csv")


def test_glob_does_not_match_its_base_folder_itself() -> None:
    assert not glob_matches("/proj/content/**/*.md", "/proj/content")


# --- glob_may_match_below ---


def test_may_match_below_the_glob_base() -> None:
    assert glob_may_match_below("/proj/content/**/*.md", "/proj/content")


def test_may_match_below_a_folder_inside_a_double_star() -> None:
    assert glob_may_match_below("/proj/content/**/*.md", "/proj/content/posts/2024")


def test_may_match_below_a_folder_above_the_glob() -> None:
    assert glob_may_match_below("/proj/_build/*/index.html", "/proj")


def test_may_not_match_below_an_unrelated_folder() -> None:
    assert not glob_may_match_below("/proj/content/**/*.md", "/proj/static")


def test_star_glob_may_not_match_below_a_subfolder() -> None:
    assert not glob_may_match_below("/proj/_build/*.css", "/proj/_build/pages")


def test_may_not_match_below_a_folder_that_the_whole_glob_names() -> None:
    # Paths below /proj/_build/data.json/ have one more segment than "_build/*.json" can match.
    assert not glob_may_match_below("/proj/_build/*.json", "/proj/_build/data.json")


# --- glob_base ---


def test_glob_base_stops_at_the_first_wildcard_segment() -> None:
    assert glob_base("/proj/content/**/*.md") == "/proj/content"


def test_glob_base_of_a_wildcard_file_name_is_its_folder() -> None:
    assert glob_base("/proj/styles/main/*.scss") == "/proj/styles/main"


def test_glob_base_stops_at_a_partial_wildcard_segment() -> None:
    assert glob_base("/proj/data/20??/x.csv") == "/proj/data"


def test_glob_base_of_a_glob_at_the_root_is_root() -> None:
    assert glob_base("/**/*.md") == "/"


# --- label ---


def test_label_inside_output_dir_is_relative() -> None:
    assert label("/proj/content/a.md", ROOT) == "content/a.md"


def test_label_outside_output_dir_stays_absolute() -> None:
    assert label("/srv/shared/data.csv", ROOT) == "/srv/shared/data.csv"


def test_label_of_a_sibling_sharing_a_prefix_stays_absolute() -> None:
    assert label("/proj2/data.csv", ROOT) == "/proj2/data.csv"


# --- IgnoreRules: defaults ---


@pytest.mark.parametrize(
    "name",
    [
        "page.md.swp",
        "page.md.swx",
        "page.md~",
        ".#page.md",
        "#page.md#",
        "4913",
        "page.md___jb_tmp___",
        "page.md___jb_old___",
        ".goutputstream-ABC",
    ],
)
def test_editor_temp_file_is_ignored(name: str) -> None:
    assert IgnoreRules(ROOT).ignores(f"/proj/content/{name}")


def test_ordinary_file_is_not_ignored() -> None:
    assert not IgnoreRules(ROOT).ignores("/proj/content/page.md")


def test_file_inside_git_folder_is_ignored() -> None:
    assert IgnoreRules(ROOT).ignores("/proj/.git/objects/ab/cdef")


def test_git_folder_itself_is_ignored() -> None:
    assert IgnoreRules(ROOT).ignores("/proj/.git", is_dir=True)


def test_file_inside_pycache_is_ignored() -> None:
    assert IgnoreRules(ROOT).ignores("/proj/pipeline/__pycache__/stats.cpython-311.pyc")


def test_file_in_cache_dir_is_ignored() -> None:
    assert IgnoreRules(ROOT).ignores("/proj/_build/.cache/render.hash")


def test_cache_dir_itself_is_ignored() -> None:
    assert IgnoreRules(ROOT).ignores("/proj/_build/.cache", is_dir=True)


def test_build_folder_outside_cache_is_not_ignored() -> None:
    assert not IgnoreRules(ROOT).ignores("/proj/_build/index.html")


# --- IgnoreRules: user patterns ---


def test_anchored_pattern_ignores_below_its_folder() -> None:
    rules = IgnoreRules(ROOT, ("drafts/**",))
    assert rules.ignores("/proj/drafts/idea.md")
    assert rules.ignores("/proj/drafts/2024/idea.md")


def test_anchored_pattern_does_not_ignore_same_name_elsewhere() -> None:
    assert not IgnoreRules(ROOT, ("drafts/**",)).ignores("/proj/content/drafts/idea.md")


def test_unanchored_pattern_ignores_at_any_depth() -> None:
    rules = IgnoreRules(ROOT, ("*.bak",))
    assert rules.ignores("/proj/a.bak")
    assert rules.ignores("/proj/content/posts/a.bak")


def test_unanchored_pattern_does_not_ignore_other_names() -> None:
    assert not IgnoreRules(ROOT, ("*.bak",)).ignores("/proj/content/a.md")


def test_dir_only_pattern_ignores_the_folder_and_below() -> None:
    rules = IgnoreRules(ROOT, ("node_modules/",))
    assert rules.ignores("/proj/node_modules", is_dir=True)
    assert rules.ignores("/proj/web/node_modules/pkg/index.js")


def test_dir_only_pattern_does_not_ignore_a_file_of_that_name() -> None:
    assert not IgnoreRules(ROOT, ("node_modules/",)).ignores("/proj/node_modules", is_dir=False)


def test_folders_above_output_dir_are_not_judged_by_default_rules() -> None:
    rules = IgnoreRules("/work/__pycache__/site")
    assert not rules.ignores("/work/__pycache__/site/content/a.md")


def test_folders_above_output_dir_are_not_judged_by_user_patterns() -> None:
    rules = IgnoreRules("/work/drafts/site", ("drafts/",))
    assert not rules.ignores("/work/drafts/site/content/a.md")


def test_compiled_globs_agree_with_matching_part_by_part() -> None:
    """The one-regex matcher a walk uses says what the part-by-part definition says."""
    rng = random.Random(20261202)
    names = ["a", "b", "ab", ".x", "a.md", "b.md", "[", "]", "!", "-", "a-b", "x[1]", "é", "*", "?"]
    parts = [
        "*",
        "**",
        "?",
        "*.md",
        "a*",
        "*b",
        "[ab]",
        "[!a]",
        "[a-c]*",
        "[",
        "[]]",
        "x[1]",
        "[z-a]",
        "?.md",
    ]

    def path(depth: int) -> str:
        return "/" + "/".join(rng.choice(names) for _ in range(depth))

    for _ in range(4000):
        pattern = "/" + "/".join(rng.choice(parts + names) for _ in range(rng.randint(1, 4)))
        for _ in range(5):
            target = path(rng.randint(0, 5))
            expected = _match(split(pattern), split(target), False)
            assert compile_glob(pattern)(target) == expected, (pattern, target)
