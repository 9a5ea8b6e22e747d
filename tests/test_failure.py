"""What a failed run's output says went wrong: its exception line, where, and its headline."""

from __future__ import annotations

import pytest

from stagewatch.failure import exception_line, exception_place, explanation, headline

TRACEBACK = [
    "rendering 3 pages",
    "Traceback (most recent call last):",
    '  File "pipeline/render.py", line 6, in run',
    "    helper(3)",
    "jinja2.exceptions.UndefinedError: 'title' is undefined",
]
CHAINED = [
    "Traceback (most recent call last):",
    "  x",
    "KeyError: 'a'",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    "  y",
    "ValueError: b",
]
GROUP = [
    "  + Exception Group Traceback (most recent call last):",
    '  |   File "p/f.py", line 4, in g',
    '  |     raise ExceptionGroup("grp", [ValueError("a")])',
    "  | ExceptionGroup: grp (2 sub-exceptions)",
    "  +-+---------------- 1 ----------------",
    "    | ValueError: a",
    "    +------------------------------------",
]
MULTILINE = [
    "Traceback (most recent call last):",
    '  File "p/f.py", line 2, in run',
    "ValueError: kaboom",
    "second line",
]
NO_SPACE = "OSError: [Errno 28] No space left on device"
CP = "cp: cannot stat 'static/x.css': No such file or directory"


@pytest.mark.parametrize(
    ("tail", "line"),
    [
        (TRACEBACK, TRACEBACK[-1]),
        ([*TRACEBACK, "", "  "], TRACEBACK[-1]),
        (CHAINED, "ValueError: b"),
        (GROUP, "ExceptionGroup: grp (2 sub-exceptions)"),
        (MULTILINE, "ValueError: kaboom"),
        ([NO_SPACE, "cleaning up"], NO_SPACE),
        (["copying", CP], CP),
        ([], None),
        (["", " "], None),
    ],
)
def test_the_line_that_says_what_went_wrong(tail: list[str], line: str | None) -> None:
    assert exception_line(tail) == line


def test_where_a_traceback_ended() -> None:
    tail = [
        "Traceback (most recent call last):",
        '  File "/site/pipeline/render.py", line 6, in run',
        "    page = template.render()",
        '  File "templates/page.html", line 3, in top-level template code',
        "jinja2.exceptions.UndefinedError: 'title' is undefined",
    ]
    assert exception_place(tail, "/site") == "templates/page.html:3"
    assert exception_place(tail[:3], "/site") == "pipeline/render.py:6"
    assert exception_place(tail[:3], "/elsewhere") == "/site/pipeline/render.py:6"
    assert exception_place(["no traceback"], "/site") is None
    assert exception_place(GROUP, "/site") == "p/f.py:4"
    into_a_library = [*tail[:3], '  File "/usr/lib/python3.11/pathlib.py", line 1044, in open', "OSError: x"]
    assert exception_place(into_a_library, "/site") == "pipeline/render.py:6"
    assert exception_place(into_a_library[3:], "/site") == "/usr/lib/python3.11/pathlib.py:1044"


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (
            ("Traceback (most recent call last):", '  File "r.py", line 3', "ValueError: bad"),
            "ValueError: bad",
        ),
        (("error: no such file", "", "   "), "error: no such file"),  # blank lines after it say nothing
        ((), None),
        (("TypeError: " + "x" * 70_000,), "TypeError: " + "x" * 288 + "\u2026"),  # a headline, not a page
    ],
)
def test_a_failures_headline(tail: tuple[str, ...], expected: str | None) -> None:
    assert headline(tail) == expected


@pytest.mark.parametrize(
    ("error", "tail", "said"),
    [
        ("exit 1", TRACEBACK, TRACEBACK[-1]),
        ("exit 1", ["exit 1"], None),  # the same words say nothing more
        ("exit 0 but declared output missing: out/", ["drwxr-xr-x 5 root root 4096 out"], None),
        ("exit 0, but a process it started was still running", ["started"], None),
        ("exit 1", [], None),
        (None, [CP], CP),
    ],
)
def test_what_a_failures_output_explains(error: str | None, tail: list[str], said: str | None) -> None:
    assert explanation(error, tail) == said
