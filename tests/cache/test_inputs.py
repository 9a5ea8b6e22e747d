"""Expanding inputs (files, folders, globs) on real files, and checking declared outputs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from stagewatch.freshness import FileProblem, Trouble
from stagewatch.inputs import Expansion, expand, missing_outputs
from stagewatch.paths import IgnoreRules, posix

WriteFile = Callable[[str, str], Path]


def run_expand(tmp_path: Path, *patterns: str, ignore: tuple[str, ...] = ()) -> Expansion:
    root = posix(tmp_path)
    return expand(patterns, root, IgnoreRules(root, ignore))


def rel_files(tmp_path: Path, expansion: Expansion) -> list[str]:
    root = posix(tmp_path) + "/"
    assert all(path.startswith(root) for path in expansion.files)
    return [path.removeprefix(root) for path in expansion.files]


# --- explicit files ---


def test_explicit_file_is_expanded_to_its_absolute_path(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("data/repos.toml", "x")
    assert run_expand(tmp_path, "data/repos.toml").files == (posix(tmp_path / "data/repos.toml"),)


def test_missing_explicit_file_is_reported_missing(tmp_path: Path) -> None:
    expansion = run_expand(tmp_path, "data/repos.toml")
    assert expansion.files == ()
    assert expansion.problems == (FileProblem("data/repos.toml", Trouble.MISSING),)


def test_explicit_file_outside_output_dir_is_expanded(tmp_path: Path, write_file: WriteFile) -> None:
    outside = write_file("shared/data.csv", "x")
    root = posix(tmp_path / "site")
    expansion = expand([posix(outside)], root, IgnoreRules(root))
    assert expansion.files == (posix(outside),)


def test_file_found_twice_is_listed_once(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("content/a.md", "x")
    expansion = run_expand(tmp_path, "content/a.md", "content/", "content/**/*.md")
    assert rel_files(tmp_path, expansion) == ["content/a.md"]


# --- folders ---


def test_folder_input_expands_recursively(tmp_path: Path, write_file: WriteFile) -> None:
    for rel in ("content/a.md", "content/posts/b.md", "content/posts/2024/c.md"):
        write_file(rel, "x")
    write_file("other/d.md", "x")
    expansion = run_expand(tmp_path, "content/")
    assert rel_files(tmp_path, expansion) == ["content/a.md", "content/posts/2024/c.md", "content/posts/b.md"]


def test_folder_written_without_slash_expands_as_folder(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("content/a.md", "x")
    write_file("content/posts/b.md", "x")
    expansion = run_expand(tmp_path, "content")
    assert rel_files(tmp_path, expansion) == ["content/a.md", "content/posts/b.md"]
    assert expansion.problems == ()


def test_missing_folder_input_is_reported_missing(tmp_path: Path) -> None:
    assert run_expand(tmp_path, "content/").problems == (FileProblem("content/", Trouble.MISSING),)


def test_empty_folder_input_gives_no_files_and_is_not_missing(tmp_path: Path) -> None:
    (tmp_path / "content").mkdir()
    assert run_expand(tmp_path, "content/") == Expansion(files=(), problems=())


# --- globs ---


def test_glob_with_double_star_expands_at_every_depth(tmp_path: Path, write_file: WriteFile) -> None:
    for rel in ("content/a.md", "content/posts/b.md", "content/posts/2024/c.md", "content/posts/x.txt"):
        write_file(rel, "x")
    expansion = run_expand(tmp_path, "content/**/*.md")
    assert rel_files(tmp_path, expansion) == ["content/a.md", "content/posts/2024/c.md", "content/posts/b.md"]


def test_single_star_glob_stays_in_its_folder(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("styles/main.scss", "x")
    write_file("styles/partials/_vars.scss", "x")
    assert rel_files(tmp_path, run_expand(tmp_path, "styles/*.scss")) == ["styles/main.scss"]


def test_glob_matching_nothing_gives_no_files_and_no_missing(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("content/a.txt", "x")
    assert run_expand(tmp_path, "content/**/*.md") == Expansion(files=(), problems=())


def test_glob_with_missing_base_gives_no_files_and_no_missing(tmp_path: Path) -> None:
    assert run_expand(tmp_path, "nowhere/**/*.md") == Expansion(files=(), problems=())


# --- what globs and folders leave out ---

EDITOR_TEMP_NAMES = [
    "a.md.swp",
    "a.md.swx",
    "a.md~",
    "#a.md#",
    "4913",
    "a.md___jb_tmp___",
    "a.md___jb_old___",
    ".goutputstream-ABC",
    ".#a.md",
]


@pytest.mark.parametrize("name", EDITOR_TEMP_NAMES)
def test_folder_input_leaves_out_editor_temp_file(tmp_path: Path, write_file: WriteFile, name: str) -> None:
    write_file("content/a.md", "x")
    write_file(f"content/{name}", "x")
    assert rel_files(tmp_path, run_expand(tmp_path, "content/")) == ["content/a.md"]


@pytest.mark.parametrize("name", EDITOR_TEMP_NAMES)
def test_glob_leaves_out_editor_temp_file(tmp_path: Path, write_file: WriteFile, name: str) -> None:
    write_file("content/a.md", "x")
    write_file(f"content/{name}", "x")
    assert rel_files(tmp_path, run_expand(tmp_path, "content/**")) == ["content/a.md"]


def test_folder_input_leaves_out_git_folder(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("a.md", "x")
    write_file(".git/HEAD", "ref")
    write_file(".git/objects/ab/cdef", "x")
    assert rel_files(tmp_path, run_expand(tmp_path, "./")) == ["a.md"]


def test_glob_leaves_out_git_folder(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("a.md", "x")
    write_file(".git/info/exclude.md", "x")
    assert rel_files(tmp_path, run_expand(tmp_path, "**/*.md")) == ["a.md"]


def test_glob_leaves_out_pycache(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("pipeline/stats.py", "x")
    write_file("pipeline/__pycache__/stats.cpython-311.pyc", "x")
    assert rel_files(tmp_path, run_expand(tmp_path, "pipeline/**")) == ["pipeline/stats.py"]


def test_glob_leaves_out_cache_dir(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("_build/index.html", "x")
    write_file("_build/.cache/render.hash", "x")
    write_file("_build/.cache/render.log", "x")
    assert rel_files(tmp_path, run_expand(tmp_path, "_build/**")) == ["_build/index.html"]


def test_folder_input_leaves_out_cache_dir(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("_build/index.html", "x")
    write_file("_build/.cache/render.hash", "x")
    assert rel_files(tmp_path, run_expand(tmp_path, "_build/")) == ["_build/index.html"]


def test_glob_leaves_out_anchored_ignore_pattern(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("content/a.md", "x")
    write_file("drafts/idea.md", "x")
    write_file("drafts/deep/idea.md", "x")
    expansion = run_expand(tmp_path, "**/*.md", ignore=("drafts/**",))
    assert rel_files(tmp_path, expansion) == ["content/a.md"]


def test_folder_input_leaves_out_unanchored_ignore_pattern(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("content/a.md", "x")
    write_file("content/posts/a.md.bak", "x")
    expansion = run_expand(tmp_path, "content/", ignore=("*.bak",))
    assert rel_files(tmp_path, expansion) == ["content/a.md"]


def test_glob_leaves_out_dir_only_ignore_pattern(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("web/app.js", "x")
    write_file("web/node_modules/pkg/index.js", "x")
    expansion = run_expand(tmp_path, "web/**/*.js", ignore=("node_modules/",))
    assert rel_files(tmp_path, expansion) == ["web/app.js"]


def test_glob_rooted_in_ignored_folder_leaves_out_its_files(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("vendor/lib.js", "x")
    rules = IgnoreRules(posix(tmp_path), ("vendor/",))
    assert rules.ignores(posix(tmp_path / "vendor/lib.js"))
    assert run_expand(tmp_path, "vendor/**/*.js", ignore=("vendor/",)).files == ()


@pytest.mark.parametrize(
    "rel",
    ["notes.md~", ".#notes.md", "#notes.md#", "notes.md.swp", "4913", ".git/HEAD", "_build/.cache/x.hash"],
)
def test_file_named_exactly_is_never_left_out(tmp_path: Path, write_file: WriteFile, rel: str) -> None:
    write_file(rel, "x")
    expansion = run_expand(tmp_path, rel)
    assert expansion == Expansion(files=(posix(tmp_path / rel),), problems=())


def test_file_named_exactly_is_kept_despite_an_ignore_pattern(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("old/a.bak", "x")
    expansion = run_expand(tmp_path, "old/a.bak", ignore=("*.bak", "old/**"))
    assert rel_files(tmp_path, expansion) == ["old/a.bak"]


# --- symlinks ---


def test_dangling_emacs_lock_link_does_not_crash_folder_input(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("content/a.md", "x")
    os.symlink("user@host.12345:1700000000", tmp_path / "content" / ".#a.md")
    assert rel_files(tmp_path, run_expand(tmp_path, "content/")) == ["content/a.md"]


def test_dangling_ordinary_link_is_left_out_of_folder_input(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("content/a.md", "x")
    os.symlink(tmp_path / "gone.md", tmp_path / "content" / "b.md")
    expansion = run_expand(tmp_path, "content/")
    assert rel_files(tmp_path, expansion) == ["content/a.md"]
    assert expansion.problems == ()


def test_dangling_ordinary_link_is_left_out_of_glob(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("content/a.md", "x")
    os.symlink(tmp_path / "gone.md", tmp_path / "content" / "b.md")
    assert rel_files(tmp_path, run_expand(tmp_path, "content/*.md")) == ["content/a.md"]


def test_dangling_link_named_exactly_is_reported_missing(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.csv", tmp_path / "data.csv")
    assert run_expand(tmp_path, "data.csv") == Expansion(
        files=(), problems=(FileProblem("data.csv", Trouble.BROKEN_LINK),)
    )


def test_fifo_named_exactly_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "data.csv")
    assert run_expand(tmp_path, "data.csv") == Expansion(
        files=(), problems=(FileProblem("data.csv", Trouble.NOT_REGULAR, "a FIFO"),)
    )


def test_device_named_exactly_is_not_a_regular_file(tmp_path: Path) -> None:
    assert run_expand(tmp_path, "/dev/null").problems == (
        FileProblem("/dev/null", Trouble.NOT_REGULAR, "a character device"),
    )


def test_fifo_in_an_input_folder_is_left_out(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("content/a.md", "x")
    os.mkfifo(tmp_path / "content" / "b.md")
    assert run_expand(tmp_path, "content/") == Expansion((posix(tmp_path / "content/a.md"),), ())
    assert run_expand(tmp_path, "content/*.md") == Expansion((posix(tmp_path / "content/a.md"),), ())


def test_file_named_as_a_folder_is_not_a_folder(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("content", "x")
    assert run_expand(tmp_path, "content/").problems == (
        FileProblem("content/", Trouble.NOT_A_FOLDER, "a regular file"),
    )


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        (FileProblem("a.md"), "declared file missing: a.md"),
        (FileProblem("content/"), "declared folder missing: content/"),
        (FileProblem("a.md", Trouble.BROKEN_LINK), "declared file missing: a.md (a broken symlink)"),
        (FileProblem("a", Trouble.NOT_REGULAR, "a FIFO"), "declared file is not a regular file (a FIFO): a"),
        (
            FileProblem("a/", Trouble.NOT_A_FOLDER, "a regular file"),
            "declared folder is not a folder (a regular file): a/",
        ),
        (
            FileProblem("a", Trouble.UNREADABLE, "Permission denied"),
            "declared file unreadable (Permission denied): a",
        ),
        (FileProblem("pipeline.x", Trouble.MODULE_NOT_FOUND), "module not found on python_path: pipeline.x"),
    ],
)
def test_each_problem_is_said_in_its_own_words(problem: FileProblem, text: str) -> None:
    assert str(problem) == text


def test_symlink_to_a_file_is_expanded_by_folder_input(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("shared/data.csv", "x")
    (tmp_path / "content").mkdir()
    os.symlink(tmp_path / "shared" / "data.csv", tmp_path / "content" / "data.csv")
    assert rel_files(tmp_path, run_expand(tmp_path, "content/")) == ["content/data.csv"]


# --- missing_outputs ---


def test_present_output_file_is_not_missing(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("_build/stats.json", "{}")
    assert missing_outputs(["_build/stats.json"], posix(tmp_path)) == ()


def test_absent_output_file_is_missing(tmp_path: Path) -> None:
    assert missing_outputs(["_build/stats.json"], posix(tmp_path)) == ("_build/stats.json",)


def test_present_output_folder_is_not_missing(tmp_path: Path) -> None:
    (tmp_path / "_build" / "pages").mkdir(parents=True)
    assert missing_outputs(["_build/pages/"], posix(tmp_path)) == ()


def test_absent_output_folder_is_missing(tmp_path: Path) -> None:
    assert missing_outputs(["_build/pages/"], posix(tmp_path)) == ("_build/pages/",)


def test_output_folder_that_is_a_file_is_missing(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("_build/pages", "not a folder")
    assert missing_outputs(["_build/pages/"], posix(tmp_path)) == ("_build/pages/",)


def test_only_the_absent_outputs_are_reported(tmp_path: Path, write_file: WriteFile) -> None:
    write_file("_build/a.json", "{}")
    outputs = ["_build/a.json", "_build/b.json", "_build/pages/"]
    assert missing_outputs(outputs, posix(tmp_path)) == ("_build/b.json", "_build/pages/")
