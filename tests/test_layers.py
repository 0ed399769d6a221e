"""The layers point one way: flows -> agents -> adapters.

Every import is read from the source (function-level ones included, since a function-level import
is an arrow all the same): adapters/ imports neither agents nor flows; agents/ never imports flows,
except the agents CLI's ``run`` command, which starts the agent-run flow, and its ``list`` command,
which asks the Prefect API that ``flows.server.local_server.prefect_api`` (every command's one choice)
picks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: (file, function) pairs allowed to import a layer above their own.
ALLOWED = {("agents/cli.py", "_run"), ("agents/cli.py", "_list")}


def upward_imports(layer: str, above: set[str]) -> list[str]:
    """``file:line function -> module`` for each import in ``layer`` of a package in ``above``."""
    found = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        for function, node in _imports(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for name in names:
                if name.split(".")[0] in above and (relative, function) not in ALLOWED:
                    found.append(f"{relative}:{node.lineno} {function or '<module>'} -> {name}")
    return found


def _imports(tree: ast.AST) -> list[tuple[str | None, ast.Import | ast.ImportFrom]]:
    """Each import with the name of the top-level function (or method) it sits in."""
    found: list[tuple[str | None, ast.Import | ast.ImportFrom]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = function
            if function is None and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = child.name
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((inner, child))
            visit(child, inner)

    visit(tree, None)
    return found


@pytest.mark.parametrize(
    ("layer", "above"), [("adapters", {"agents", "flows"}), ("agents", {"flows"})]
)
def test_no_import_points_back_up(layer: str, above: set[str]) -> None:
    assert upward_imports(layer, above) == []


def test_the_check_sees_function_level_imports(tmp_path: Path) -> None:
    source = "def f():\n    from flows.runtime.step_task import execute_step\n"
    [(function, node)] = _imports(ast.parse(source))
    assert (
        function == "f"
        and isinstance(node, ast.ImportFrom)
        and node.module == "flows.runtime.step_task"
    )
