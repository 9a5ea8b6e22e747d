"""`python -m stagewatch` in a project whose files share names with the standard library."""

from __future__ import annotations

import pytest

from tests.helpers.project import Project

pytestmark = pytest.mark.timeout(30)


def test_a_projects_copy_py_and_json_py_do_not_stand_in_for_the_standard_library(project: Project) -> None:
    for name in ("copy", "json", "dataclasses", "enum", "shlex"):
        project.write(f"{name}.py", "raise SystemExit('the project file was imported by stagewatch')\n")
    project.write("in.txt", "x")
    project.config(
        """
        [[stage]]
        name = "copy"
        command = ["cp", "in.txt", "out.txt"]
        inputs = ["in.txt"]
        outputs = ["out.txt"]
        """
    )
    proc = project.cli("build")
    assert proc.returncode == 0, proc.stderr
    assert project.read("out.txt") == "x"
    status = project.cli("status", "--json")
    assert status.returncode == 0 and '"state": "fresh"' in status.stdout
