"""Finding a stage module's source and its project-local imports by reading, never importing."""

from __future__ import annotations

import os
import sys
import textwrap
import time
import warnings
from pathlib import Path

from stagewatch.codedeps import (
    ModuleResolver,
    Resolvers,
    find_code_dependencies,
    imported_names,
    read_imports,
    resolve_module_source,
)
from stagewatch.paths import posix


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def deps(tmp_path: Path, module: str) -> list[str]:
    """The dependencies of module, relative to tmp_path (the search path)."""
    root = posix(tmp_path)
    found = find_code_dependencies(module, ModuleResolver([root]))
    assert all(path.startswith(root + "/") for path in found)
    return [path.removeprefix(root + "/") for path in found]


# --- resolve_module_source ---


def test_resolve_module_source_finds_a_module_file(tmp_path: Path) -> None:
    write_tree(tmp_path, {"pipeline/__init__.py": "", "pipeline/stats.py": ""})
    source = resolve_module_source("pipeline.stats", [posix(tmp_path)])
    assert source == posix(tmp_path / "pipeline" / "stats.py")


def test_resolve_module_source_finds_a_top_level_module(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stats.py": ""})
    assert resolve_module_source("stats", [posix(tmp_path)]) == posix(tmp_path / "stats.py")


def test_resolve_module_source_of_a_package_is_its_init(tmp_path: Path) -> None:
    write_tree(tmp_path, {"pipeline/__init__.py": ""})
    assert resolve_module_source("pipeline", [posix(tmp_path)]) == posix(
        tmp_path / "pipeline" / "__init__.py"
    )


def test_resolve_module_source_uses_the_first_search_path_entry(tmp_path: Path) -> None:
    write_tree(tmp_path, {"first/stats.py": "", "second/stats.py": ""})
    search_path = [posix(tmp_path / "first"), posix(tmp_path / "second")]
    assert resolve_module_source("stats", search_path) == posix(tmp_path / "first" / "stats.py")


def test_resolve_module_source_of_a_missing_module_is_none(tmp_path: Path) -> None:
    assert resolve_module_source("pipeline.nowhere", [posix(tmp_path)]) is None


def test_resolve_module_source_does_not_find_the_standard_library(tmp_path: Path) -> None:
    assert resolve_module_source("json", [posix(tmp_path)]) is None


# --- imports found ---


def test_import_of_a_submodule_is_found_with_its_package(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stage.py": "import pkg.helper\n", "pkg/__init__.py": "", "pkg/helper.py": ""})
    assert deps(tmp_path, "stage") == ["pkg/__init__.py", "pkg/helper.py"]


def test_import_of_a_top_level_module_is_found(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stage.py": "import common\n", "common.py": ""})
    assert deps(tmp_path, "stage") == ["common.py"]


def test_aliased_import_is_found(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stage.py": "import common as c\n", "common.py": ""})
    assert deps(tmp_path, "stage") == ["common.py"]


def test_from_package_import_submodule_is_found(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stage.py": "from pkg import helper\n", "pkg/__init__.py": "", "pkg/helper.py": ""})
    assert deps(tmp_path, "stage") == ["pkg/__init__.py", "pkg/helper.py"]


def test_from_module_import_name_finds_the_module(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"stage.py": "from pkg.helper import slugify\n", "pkg/__init__.py": "", "pkg/helper.py": ""},
    )
    assert deps(tmp_path, "stage") == ["pkg/__init__.py", "pkg/helper.py"]


def test_from_package_import_name_does_not_add_other_submodules(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "stage.py": "from pkg import slugify\n",
            "pkg/__init__.py": "def slugify(text): return text\n",
            "pkg/unused.py": "",
        },
    )
    assert deps(tmp_path, "stage") == ["pkg/__init__.py"]


def test_relative_import_of_a_sibling_is_found(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"pkg/__init__.py": "", "pkg/stage.py": "from . import sibling\n", "pkg/sibling.py": ""},
    )
    assert deps(tmp_path, "pkg.stage") == ["pkg/__init__.py", "pkg/sibling.py"]


def test_relative_import_from_a_nested_module_is_found(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/stage.py": "from .sub.mod import x\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/mod.py": "x = 1\n",
        },
    )
    assert deps(tmp_path, "pkg.stage") == ["pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/mod.py"]


def test_relative_import_two_levels_up_is_found(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/up.py": "",
            "pkg/sub/__init__.py": "",
            "pkg/sub/stage.py": "from .. import up\n",
        },
    )
    assert deps(tmp_path, "pkg.sub.stage") == ["pkg/__init__.py", "pkg/sub/__init__.py", "pkg/up.py"]


def test_relative_import_in_a_package_init_is_found(tmp_path: Path) -> None:
    write_tree(
        tmp_path, {"stage.py": "import pkg\n", "pkg/__init__.py": "from . import core\n", "pkg/core.py": ""}
    )
    assert deps(tmp_path, "stage") == ["pkg/__init__.py", "pkg/core.py"]


def test_relative_import_beyond_the_top_level_is_skipped(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stage.py": "from . import common\n", "common.py": ""})
    assert deps(tmp_path, "stage") == []


def test_imports_are_followed_transitively(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "stage.py": "import a\n",
            "a.py": "import b\n",
            "b.py": "from c import f\n",
            "c.py": "def f(): pass\n",
        },
    )
    assert deps(tmp_path, "stage") == ["a.py", "b.py", "c.py"]


def test_packages_above_the_stage_module_count(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"pipeline/__init__.py": "", "pipeline/render/__init__.py": "", "pipeline/render/run.py": ""},
    )
    assert deps(tmp_path, "pipeline.render.run") == ["pipeline/__init__.py", "pipeline/render/__init__.py"]


def test_imports_of_a_package_init_are_followed(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"pipeline/__init__.py": "import common\n", "pipeline/stats.py": "", "common.py": ""},
    )
    assert deps(tmp_path, "pipeline.stats") == ["common.py", "pipeline/__init__.py"]


def test_stage_module_is_not_its_own_dependency(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stage.py": "import stage\nimport common\n", "common.py": ""})
    assert deps(tmp_path, "stage") == ["common.py"]


def test_import_cycle_terminates_and_finds_both_modules(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stage.py": "import a\n", "a.py": "import b\n", "b.py": "import a\n"})
    assert deps(tmp_path, "stage") == ["a.py", "b.py"]


def test_import_cycle_through_the_stage_module_terminates(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "import b\n", "b.py": "import a\n"})
    assert deps(tmp_path, "a") == ["b.py"]


def test_import_inside_a_function_is_found(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stage.py": "def run(output_dir):\n    import common\n", "common.py": ""})
    assert deps(tmp_path, "stage") == ["common.py"]


def test_import_inside_a_try_block_is_found(tmp_path: Path) -> None:
    source = """\
        try:
            from fast import parse
        except ImportError:
            from slow import parse
        """
    write_tree(tmp_path, {"stage.py": source, "fast.py": "", "slow.py": ""})
    assert deps(tmp_path, "stage") == ["fast.py", "slow.py"]


# --- what is not followed ---


def test_standard_library_imports_are_not_dependencies(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stage.py": "import json\nimport os.path\nfrom collections import abc\n"})
    assert deps(tmp_path, "stage") == []


def test_installed_packages_are_not_dependencies(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stage.py": "import pytest\nfrom structlog import get_logger\n"})
    assert deps(tmp_path, "stage") == []


def test_unresolvable_import_is_skipped(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stage.py": "import not_installed_anywhere\nimport common\n", "common.py": ""})
    assert deps(tmp_path, "stage") == ["common.py"]


def test_missing_stage_module_has_no_dependencies(tmp_path: Path) -> None:
    assert find_code_dependencies("pipeline.nowhere", ModuleResolver([posix(tmp_path)])) == []


# --- broken modules ---


def test_stage_module_with_syntax_error_has_no_dependencies(tmp_path: Path) -> None:
    write_tree(tmp_path, {"stage.py": "import common\ndef broken(:\n", "common.py": ""})
    assert deps(tmp_path, "stage") == []


def test_dependency_with_syntax_error_is_still_a_dependency(tmp_path: Path) -> None:
    write_tree(
        tmp_path, {"stage.py": "import broken\n", "broken.py": "import common\nclass (\n", "common.py": ""}
    )
    assert deps(tmp_path, "stage") == ["broken.py"]


def test_module_with_null_bytes_does_not_crash(tmp_path: Path) -> None:
    (tmp_path / "stage.py").write_bytes(b"import common\n\x00\n")
    write_tree(tmp_path, {"common.py": ""})
    assert deps(tmp_path, "stage") == []


def test_module_that_is_not_utf8_does_not_crash(tmp_path: Path) -> None:
    (tmp_path / "stage.py").write_bytes(b"import common\nname = '\xe9'\n")
    write_tree(tmp_path, {"common.py": ""})
    assert deps(tmp_path, "stage") == []


def test_module_with_invalid_escape_sequence_still_has_its_imports_found(tmp_path: Path) -> None:
    source = 'import re\nimport common\nNUMBER = re.compile("\\d+")\n'
    write_tree(tmp_path, {"stage.py": source, "common.py": ""})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as under `python -W error` or PYTHONWARNINGS=error
        found = deps(tmp_path, "stage")
    assert found == ["common.py"]


# --- nothing is imported ---


def test_finding_dependencies_never_imports_the_modules(tmp_path: Path) -> None:
    marker = tmp_path / "imported.txt"
    top_level = f"""\
        import sw_never_helper
        open({str(marker)!r}, "w").write("imported")
        raise RuntimeError("must not be imported")
        """
    write_tree(
        tmp_path,
        {
            "sw_never_stage.py": top_level,
            "sw_never_helper.py": top_level.replace("import sw_never_helper", ""),
        },
    )
    assert deps(tmp_path, "sw_never_stage") == ["sw_never_helper.py"]
    assert not marker.exists()
    assert "sw_never_stage" not in sys.modules
    assert "sw_never_helper" not in sys.modules


def test_resolving_a_module_source_never_imports_its_package(tmp_path: Path) -> None:
    marker = tmp_path / "imported.txt"
    init = f'open({str(marker)!r}, "w").write("imported")\nraise RuntimeError("must not be imported")\n'
    write_tree(tmp_path, {"sw_never_pkg/__init__.py": init, "sw_never_pkg/stats.py": ""})
    source = resolve_module_source("sw_never_pkg.stats", [posix(tmp_path)])
    assert source == posix(tmp_path / "sw_never_pkg" / "stats.py")
    assert not marker.exists()
    assert "sw_never_pkg" not in sys.modules


# --- reuse across checks ---


def _age(*folders: Path) -> None:
    """Date folders a minute back, beyond the window in which a change could hide."""
    past = time.time() - 60
    for folder in folders:
        os.utime(folder, (past, past))


def test_a_resolver_is_reused_while_the_folders_it_searched_are_unchanged(tmp_path: Path) -> None:
    write_tree(tmp_path, {"pipeline/__init__.py": "", "pipeline/render.py": "from pipeline import helpers\n"})
    _age(tmp_path, tmp_path / "pipeline")
    resolvers = Resolvers()
    first = resolvers.for_path([posix(tmp_path)])
    assert find_code_dependencies("pipeline.render", first) == [posix(tmp_path / "pipeline/__init__.py")]
    assert resolvers.for_path([posix(tmp_path)]) is first

    # A module the import names appears: its folder's mtime says the answers may be wrong now.
    write_tree(tmp_path, {"pipeline/helpers.py": ""})
    second = resolvers.for_path([posix(tmp_path)])
    assert second is not first
    assert find_code_dependencies("pipeline.render", second) == [
        posix(tmp_path / "pipeline/__init__.py"),
        posix(tmp_path / "pipeline/helpers.py"),
    ]


def test_a_folder_beside_a_module_that_becomes_a_package_wins_at_once(tmp_path: Path) -> None:
    # `import helpers` finds helpers.py while helpers/ holds no __init__.py; once it holds one,
    # the package is what runs. Only helpers/ changed: the search folder keeps its mtime.
    write_tree(tmp_path, {"helpers.py": "", "helpers/data.txt": "", "render.py": "import helpers\n"})
    _age(tmp_path, tmp_path / "helpers")
    resolvers = Resolvers()
    assert find_code_dependencies("render", resolvers.for_path([posix(tmp_path)])) == [
        posix(tmp_path / "helpers.py")
    ]
    write_tree(tmp_path, {"helpers/__init__.py": ""})
    assert find_code_dependencies("render", resolvers.for_path([posix(tmp_path)])) == [
        posix(tmp_path / "helpers/__init__.py")
    ]


def test_a_folder_changed_just_now_is_searched_again_each_time(tmp_path: Path) -> None:
    write_tree(tmp_path, {"render.py": ""})
    resolvers = Resolvers()
    first = resolvers.for_path([posix(tmp_path)])
    first.find("render")
    # Changed within the timestamp window: a second change in the same tick would not show.
    assert resolvers.for_path([posix(tmp_path)]) is not first


def test_kept_import_statements_are_the_ones_a_read_finds(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/a.py": """\
                import os, pipeline.b as b
                from . import c
                from .d import e
                from .g import *
                from .. import beyond
                def later():
                    from pipeline import f
            """,
        },
    )
    statements = read_imports(posix(tmp_path / "pipeline/a.py"))
    assert statements == (
        (0, "os", ()),
        (0, "pipeline.b", ()),
        (1, "", ("c",)),
        (1, "d", ("e",)),
        (1, "g", ("*",)),
        (2, "", ("beyond",)),
        (0, "pipeline", ("f",)),
    )
    module = ModuleResolver([posix(tmp_path)]).find("pipeline.a")
    assert module is not None
    assert imported_names(statements, module) == [
        "os",
        "pipeline.b",
        "pipeline",
        "pipeline.c",
        "pipeline.d",
        "pipeline.d.e",
        "pipeline.g",
        "pipeline",
        "pipeline.f",
    ]


def test_a_folder_restored_with_its_old_mtime_is_searched_again(tmp_path: Path) -> None:
    # rsync or tar puts a folder's mtime back; its ctime says it changed all the same.
    write_tree(tmp_path, {"pipeline/__init__.py": "", "pipeline/render.py": "from pipeline import helpers\n"})
    _age(tmp_path, tmp_path / "pipeline")
    resolvers = Resolvers()
    first = resolvers.for_path([posix(tmp_path)])
    assert find_code_dependencies("pipeline.render", first) == [posix(tmp_path / "pipeline/__init__.py")]
    before = os.stat(tmp_path / "pipeline").st_mtime_ns
    write_tree(tmp_path, {"pipeline/helpers.py": ""})
    os.utime(tmp_path / "pipeline", ns=(before, before))
    second = resolvers.for_path([posix(tmp_path)])
    assert second is not first
    assert posix(tmp_path / "pipeline/helpers.py") in find_code_dependencies("pipeline.render", second)
