"""The command line's words: every command's help says what it does and shows examples."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stagewatch.commandline import COMMAND_HELP, parser


@pytest.mark.parametrize("name", COMMAND_HELP)
def test_every_commands_help_says_what_it_does_with_examples(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args([name, "--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    words = COMMAND_HELP[name]
    assert " ".join(shown.split()).count(words.description) == 1
    examples = shown.split("examples:\n", 1)[1]
    assert [line.strip() for line in examples.splitlines() if line.strip()] == list(words.examples)
    assert all(example.startswith("stagewatch ") for example in words.examples)
    assert max(len(line) for line in shown.splitlines()) <= 80


def test_the_list_of_commands_names_each_with_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    shown = capsys.readouterr().out
    for name, words in COMMAND_HELP.items():
        assert any(line.split() == [name, *words.summary.split()] for line in shown.splitlines()), name
    assert "`stagewatch COMMAND --help`" in shown


def test_a_mistyped_command_suggests_the_one_meant() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stagewatch", "biuld"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert proc.stderr.rstrip().endswith('(did you mean "build"?)')
    assert "Traceback" not in proc.stderr
