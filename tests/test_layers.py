"""The walls between the layers and the rooms, read from the source and checked.

Every import is read from the source with :mod:`ast` (function-level ones included: a
function-level import is an arrow all the same). Five rules hold:

1. **The layers point one way**: flows -> agents -> adapters. adapters/ imports neither agents nor
   flows; agents/ never imports flows (its commands live in ``flows.cli``). The one exception
   (:data:`ALLOWED`) is ``python -m flows.data_pipeline``, the main job's name in the design, which
   is the ``aiop run`` command of ``flows.cli`` under its own name.
2. **Rooms import only the rooms their role needs**: :data:`ROOMS` says, for each room (a package
   such as ``flows.runtime``), which other rooms its modules may import; a module belongs to the
   longest room its name starts with. An arrow the map does not draw fails the test, and so does
   an arrow of the map that no import uses.
3. **No import cycles** between modules. Imports under ``if TYPE_CHECKING:`` are left out of this
   rule (they never run, so they close no circle at import time), but they count for the map.
4. **Nothing loose under flows/**: only ``__init__.py`` and ``py.typed`` sit directly in it.
5. **Step programs are self-contained**: a module of ``flows/steps`` (what runs inside the step's
   container or process) imports only the standard library, its sibling step modules and the
   Python packages the agents that run it declare under ``requirements:`` in
   ``agents/definitions/*.yaml``.

Each rule is a function over a source tree (``root``), so the tests also plant a violation in a
small tree under ``tmp_path`` and see the rule catch it.

Run as a script, it prints the layout's measures::

    python -m tests.test_layers [--root DIR] [--hops]

product lines (``flows``, ``agents``, ``adapters``; no tests), files, the longest import chain
(runtime imports, cycles condensed), the import cycles, and with ``--hops`` the path of one step.
The hops are measured, not guessed: the pipeline (``python -m flows.data_pipeline`` on a small
CSV, local runner) runs in a child process whose ``asyncio.create_subprocess_exec`` is wrapped to
record the Python call stack at the moment the first step process is started. The stack's frames
in product files, from the entry point down, are the path on the flow's side; the step process
adds ``flows/steps/__main__.py`` and the step's module (its entry, two more files, read from
``python -m flows.steps``). A hop is a call from one file into another (a call back into a file
already on the path counts too, which is how a callback that climbs back up shows).
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import distributions, packages_distributions
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("flows", "agents", "adapters")

#: (file, function) pairs allowed to import what the map does not draw: the main job's own name
#: (``python -m flows.data_pipeline``) runs the ``aiop run`` command.
ALLOWED: set[tuple[str, str | None]] = {("flows/data_pipeline/__main__.py", None)}

#: Which rooms each room may import (besides itself). A room is a package; a module belongs to the
#: longest room its name starts with. ``flows`` is the package ``flows/__init__.py`` alone (its
#: lazy re-exports), ``adapters`` the modules directly under adapters/ (contract, errors,
#: settings, the local runner, selection ...), ``agents`` the whole agents layer.
ROOMS: dict[str, frozenset[str]] = {
    "flows": frozenset({"flows.runtime", "flows.ui"}),
    "flows.cli": frozenset({"*"}),
    "flows.benchmarks": frozenset(
        {
            "flows.data_pipeline",
            "flows.runtime",
            "flows.server",
            "flows.steps",
            "adapters",
            "adapters.breakers",
        }
    ),
    "flows.ops": frozenset(
        {
            "flows.data_pipeline",
            "flows.runtime",
            "flows.server",
            "flows.steps",
            "flows.ui",
            "adapters",
            "adapters.breakers",
            "adapters.dagger",
        }
    ),
    "flows.data_pipeline": frozenset(
        {
            "flows.runtime",
            "flows.server",
            "flows.steps",
            "flows.ui",
            "agents",
            "adapters",
            "adapters.ownership",
        }
    ),
    "flows.ui": frozenset({"flows.runtime", "flows.server", "flows.steps", "adapters"}),
    "flows.runtime": frozenset(
        {"agents", "adapters", "adapters.breakers", "adapters.dagger", "adapters.ownership"}
    ),
    "flows.server": frozenset({"adapters"}),
    "flows.steps": frozenset(),
    "agents": frozenset({"adapters", "adapters.breakers"}),
    "adapters": frozenset({"adapters.breakers", "adapters.dagger", "adapters.ownership"}),
    "adapters.dagger": frozenset({"adapters", "adapters.ownership"}),
    "adapters.ownership": frozenset({"adapters"}),
    "adapters.breakers": frozenset({"adapters"}),
}


@dataclass(frozen=True)
class Arrow:
    """One import: ``source`` imports ``target`` (module names) at ``file:line`` in ``function``."""

    source: str
    target: str
    file: str
    line: int
    function: str | None
    type_checking: bool

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.function or '<module>'} -> {self.target}"


def modules(root: Path) -> dict[str, Path]:
    """Every product module under ``root`` by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(tree: ast.AST) -> list[tuple[str | None, bool, ast.Import | ast.ImportFrom]]:
    """Each import with the top-level function (or method) it sits in and whether it sits under
    ``if TYPE_CHECKING:``."""
    found: list[tuple[str | None, bool, ast.Import | ast.ImportFrom]] = []

    def visit(node: ast.AST, function: str | None, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner, only = function, typing_only
            if function is None and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = child.name
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for grandchild in child.body:
                    visit(ast.Module(body=[grandchild], type_ignores=[]), inner, True)
                for grandchild in child.orelse:
                    visit(ast.Module(body=[grandchild], type_ignores=[]), inner, only)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((inner, only, child))
            visit(child, inner, only)

    visit(tree, None, False)
    return found


def _names(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement loads (``from a import b`` loads ``a.b`` if b is a
    module, else ``a``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def arrows(root: Path) -> list[Arrow]:
    """Every import between product modules under ``root`` (to the module the import names)."""
    known = modules(root)
    found: list[Arrow] = []
    for module, path in known.items():
        relative = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        for function, typing_only, node in _imports(tree):
            names = _names(module, path.name == "__init__.py", node)
            submodules = [n for n in names[:-1] if n in known]
            if isinstance(node, ast.ImportFrom) and len(submodules) == len(names) - 1:
                names = submodules  # `from a import b, c` of modules b and c: a.b and a.c only
            targets = []
            for name in names:
                parts = name.split(".")
                while parts and ".".join(parts) not in known:
                    parts.pop()
                targets.append(".".join(parts))
            for target in dict.fromkeys(targets):
                if target and target != module:
                    found.append(
                        Arrow(module, target, relative, node.lineno, function, typing_only)
                    )
    return found


def external_imports(root: Path, package: str) -> list[tuple[str, str, int]]:
    """``(file, top-level name, line)`` of each import in ``package`` of something outside it."""
    found = []
    folder = root / package.replace(".", "/")
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        for _function, _typing, node in _imports(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                if name and name != package and not name.startswith(package + "."):
                    found.append((relative, name.split(".")[0], node.lineno))
    return found


# ------------------------------------------------------------------------------------ the rules


def upward_imports(layer: str, above: set[str], root: Path = ROOT) -> list[str]:
    """``file:line function -> module`` for each import in ``layer`` of a package in ``above``."""
    found = []
    for path in sorted((root / layer).rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        for function, _typing, node in _imports(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for name in names:
                if name.split(".")[0] in above and (relative, function) not in ALLOWED:
                    found.append(f"{relative}:{node.lineno} {function or '<module>'} -> {name}")
    return found


def room_of(module: str, rooms: Iterable[str] = ROOMS) -> str:
    """The longest room ``module`` is in (``flows.ui.charts`` -> ``flows.ui``)."""
    best = ""
    for room in rooms:
        if (module == room or module.startswith(room + ".")) and len(room) > len(best):
            best = room
    if not best:
        raise KeyError(f"{module} is in no room; add its package to ROOMS")
    return best


def forbidden_arrows(root: Path = ROOT, rooms: dict[str, frozenset[str]] = ROOMS) -> list[str]:
    """Each import from one room into another that ``rooms`` does not allow."""
    found = []
    for arrow in arrows(root):
        if (arrow.file, arrow.function) in ALLOWED:
            continue
        source, target = room_of(arrow.source, rooms), room_of(arrow.target, rooms)
        allowed = rooms[source]
        if source != target and target not in allowed and "*" not in allowed:
            found.append(f"{arrow} ({source} may not import {target})")
    return found


def unused_arrows(root: Path = ROOT, rooms: dict[str, frozenset[str]] = ROOMS) -> list[str]:
    """Each arrow of ``rooms`` that no import uses (the map draws only what the code does)."""
    used = {(room_of(a.source, rooms), room_of(a.target, rooms)) for a in arrows(root)}
    return [
        f"{room} -> {target}"
        for room, allowed in sorted(rooms.items())
        for target in sorted(allowed - {"*"})
        if (room, target) not in used
    ]


def runtime_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules it imports when it runs (``TYPE_CHECKING`` imports left out)."""
    graph: dict[str, set[str]] = {module: set() for module in modules(root)}
    for arrow in arrows(root):
        if not arrow.type_checking:
            graph[arrow.source].add(arrow.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (each an import circle), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(
        node: str,
    ) -> None:  # Tarjan's algorithm (recursive: the graph is a few hundred modules)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                group.append(other)
                if other == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(found)


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest import chain (modules, importer first), each circle condensed to one node."""
    group_of = {m: tuple(g) for g in cycles(graph) for m in g}
    best: dict[str, list[str]] = {}

    def longest(node: str) -> list[str]:
        if node not in best:
            best[node] = [node]  # a guard for circles: they are condensed, not followed
            here = set(group_of.get(node, (node,)))
            tails = [longest(t) for m in here for t in graph.get(m, ()) if t not in here]
            best[node] = [node, *max(tails, key=len, default=[])]
        return best[node]

    return max((longest(n) for n in sorted(graph)), key=len, default=[])


def loose_modules(root: Path = ROOT) -> list[str]:
    """Files directly under flows/ other than ``__init__.py`` and ``py.typed``."""
    return sorted(
        p.name
        for p in (root / "flows").iterdir()
        if p.is_file() and p.name not in ("__init__.py", "py.typed")
    )


def _import_names(requirements: Iterable[str]) -> set[str]:
    """The top-level import names the distributions in ``requirements`` provide (``pyyaml`` ->
    ``yaml``), read from the installed distributions' metadata."""
    wanted = set()
    for requirement in requirements:
        name = str(requirement).split(";")[0].split("[")[0]
        for mark in "=<>!~ ":
            name = name.split(mark)[0]
        wanted.add(name.lower().replace("_", "-"))
    return {
        module
        for module, distributions in _distributions().items()
        if any(d.lower().replace("_", "-") in wanted for d in distributions)
    }


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """Import name -> the installed distributions that provide it (read once: it walks them).

    ``packages_distributions`` infers a distribution's top-level modules from its ``.py`` files
    only; its top-level compiled modules (DuckDB's ``_duckdb`` extension) are added here."""
    found = {name: list(dists) for name, dists in packages_distributions().items()}
    for dist in distributions():
        for file in dist.files or ():
            name = inspect.getmodulename(file.name) if len(file.parts) == 1 else None
            if name and not file.name.endswith(".py") and dist.metadata["Name"]:
                found.setdefault(name, []).append(dist.metadata["Name"])
    return found


def step_agents(root: Path = ROOT) -> dict[str, tuple[str, set[str]]]:
    """Agent name -> (the step it runs with ``python -m flows.steps <step>``, the import names
    its ``requirements:`` provide), for the agents under ``agents/definitions``."""
    found = {}
    for path in sorted((root / "agents" / "definitions").glob("*.yaml")):
        agent = yaml.safe_load(path.read_text(encoding="utf-8"))
        command = [str(a) for a in agent.get("command") or []]
        if "flows.steps" in command and command.index("flows.steps") + 1 < len(command):
            step = command[command.index("flows.steps") + 1]
            found[agent["name"]] = (step, _import_names(agent.get("requirements") or []))
    return found


def declared_requirements(root: Path = ROOT) -> set[str]:
    """The import names any step agent's ``requirements:`` provide."""
    return {name for _, names in step_agents(root).values() for name in names}


def _foreign(name: str, allowed: set[str]) -> bool:
    return name not in sys.stdlib_module_names and name not in allowed and name != "__future__"


def step_program_imports(root: Path = ROOT) -> list[str]:
    """Each import in flows/steps of something neither standard library, a sibling step module
    nor a requirement some step agent declares; then, for each step agent, each module its step
    loads (the step's module and what it imports, with what ``__main__`` imports at module level
    and in ``main``, for every step)
    that imports a package the agent does not declare."""
    declared = declared_requirements(root)
    found = [
        f"{file}:{line} -> {name}"
        for file, name, line in external_imports(root, "flows.steps")
        if _foreign(name, declared)
    ]
    every = arrows(root)
    graph = runtime_graph(root)
    known = modules(root)
    entry = {  # what `python -m flows.steps` loads whatever the step (not what _dispatch picks)
        a.target
        for a in every
        if a.source == "flows.steps.__main__"
        and a.function in (None, "main")
        and not a.type_checking
    }
    by_file: dict[str, list[tuple[str, int]]] = {}
    for file, name, line in external_imports(root, "flows.steps"):
        by_file.setdefault(file, []).append((name, line))
    for agent, (step, allowed) in step_agents(root).items():
        loaded: set[str] = set()
        todo = [f"flows.steps.{step}", *entry]
        while todo:
            module = todo.pop()
            if module in loaded or module not in graph:
                continue
            loaded.add(module)
            todo += sorted(graph[module])
        for module in sorted(loaded):
            file = known[module].relative_to(root).as_posix()
            for name, line in by_file.get(file, []):
                if _foreign(name, allowed) and name in declared:
                    found.append(
                        f"{file}:{line} -> {name} (loaded by step {step!r}; agent {agent} does"
                        " not declare it)"
                    )
    return found


# ------------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize(
    ("layer", "above"), [("adapters", {"agents", "flows"}), ("agents", {"flows"})]
)
def test_no_import_points_back_up(layer: str, above: set[str]) -> None:
    assert upward_imports(layer, above) == []


def test_the_check_sees_function_level_imports(tmp_path: Path) -> None:
    source = "def f():\n    from flows.runtime.step_task import execute_step\n"
    [(function, typing_only, node)] = _imports(ast.parse(source))
    assert (
        function == "f"
        and not typing_only
        and isinstance(node, ast.ImportFrom)
        and node.module == "flows.runtime.step_task"
    )


def test_every_arrow_between_rooms_is_on_the_map() -> None:
    assert forbidden_arrows() == []


def test_every_arrow_on_the_map_is_used() -> None:
    assert unused_arrows() == []


def test_every_module_is_in_a_room() -> None:
    for module in modules(ROOT):
        room_of(module)


def test_there_are_no_import_cycles() -> None:
    assert cycles(runtime_graph()) == []


def test_nothing_is_loose_under_flows() -> None:
    assert loose_modules() == []


def test_step_programs_import_only_the_standard_library_and_their_requirements() -> None:
    assert {"duckdb", "yaml"} <= declared_requirements()
    assert step_program_imports() == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    """A small source tree: every layer present, plus ``files`` (path -> source)."""
    for layer in LAYERS:
        (root / layer).mkdir(parents=True, exist_ok=True)
        (root / layer / "__init__.py").touch()
    (root / "agents" / "definitions").mkdir(exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_planted_forbidden_arrow_is_caught(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "flows/server/__init__.py": "",
            "flows/server/start.py": "def go():\n    from flows.ui import console\n",
            "flows/ui/__init__.py": "",
            "flows/ui/console.py": "import flows.server.start\n",
        },
    )
    assert forbidden_arrows(root) == [
        "flows/server/start.py:2 go -> flows.ui.console (flows.server may not import flows.ui)"
    ]


def test_a_planted_unused_arrow_is_caught(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "flows/ui/__init__.py": "from flows.server import start\n",
            "flows/server/__init__.py": "",
            "flows/server/start.py": "",
        },
    )
    rooms = {**ROOMS, "flows.ui": frozenset({"flows.server", "flows.runtime"})}
    assert unused_arrows(root, rooms)[:1] == ["adapters -> adapters.breakers"]
    assert "flows.ui -> flows.runtime" in unused_arrows(root, rooms)
    assert "flows.ui -> flows.server" not in unused_arrows(root, rooms)


def test_a_planted_upward_import_is_caught(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"adapters/x.py": "from flows.runtime import step_task\n"})
    assert upward_imports("adapters", {"flows"}, root) == [
        "adapters/x.py:1 <module> -> flows.runtime"
    ]


def test_a_planted_cycle_is_caught_through_a_function_level_import(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "flows/steps/__init__.py": "",
            "flows/steps/a.py": "from flows.steps.b import f\n",
            "flows/steps/b.py": "def f():\n    from flows.steps import a\n",
            "flows/steps/c.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from flows.steps import d\n",
            "flows/steps/d.py": "from flows.steps import c\n",
        },
    )
    graph = runtime_graph(root)
    assert cycles(graph) == [["flows.steps.a", "flows.steps.b"]]  # c <-> d is typing only
    assert longest_chain(graph) in (
        ["flows.steps.a", "flows.steps.b"],
        ["flows.steps.b", "flows.steps.a"],
        ["flows.steps.d", "flows.steps.c"],
    )


def test_a_planted_loose_module_is_caught(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"flows/py.typed": "", "flows/helpers.py": "X = 1\n"})
    assert loose_modules(root) == ["helpers.py"]


def test_a_planted_undeclared_step_import_is_caught(tmp_path: Path) -> None:
    agent = "name: v\ncommand: [python, -m, flows.steps, v]\nrequirements: [duckdb]\n"
    root = _tree(
        tmp_path,
        {
            "agents/definitions/v.yaml": agent,
            "flows/steps/__init__.py": "",
            "flows/steps/v.py": "import json\nimport duckdb\nfrom flows.steps import w\n"
            "def f():\n    import pydantic\n",
            "flows/steps/w.py": "from flows.runtime import step_task\n",
        },
    )
    assert step_program_imports(root) == [
        "flows/steps/v.py:5 -> pydantic",
        "flows/steps/w.py:1 -> flows",
    ]


def test_a_step_that_loads_a_package_its_agent_does_not_declare_is_caught(
    tmp_path: Path,
) -> None:
    root = _tree(
        tmp_path,
        {
            "agents/definitions/a.yaml": "name: a\ncommand: [python, -m, flows.steps, a]\n"
            "requirements: [duckdb]\n",
            "agents/definitions/b.yaml": "name: b\ncommand: [python, -m, flows.steps, b]\n"
            "requirements: [duckdb, pyyaml]\n",
            "flows/steps/__init__.py": "",
            "flows/steps/__main__.py": "from flows.steps import _io\n"
            "def _dispatch():\n    from flows.steps import a, b\n",
            "flows/steps/_io.py": "import json\n",
            "flows/steps/a.py": "import duckdb\nfrom flows.steps import schema\n",
            "flows/steps/b.py": "from flows.steps import schema\n",
            "flows/steps/schema.py": "import yaml\n",
        },
    )
    assert step_program_imports(root) == [
        "flows/steps/schema.py:1 -> yaml (loaded by step 'a'; agent a does not declare it)"
    ]


def test_longest_chain_follows_the_imports(tmp_path: Path) -> None:
    graph = {"a": {"b", "c"}, "b": {"c"}, "c": set()}
    assert longest_chain(graph) == ["a", "b", "c"]


def test_the_measures_count_product_lines_files_chain_and_cycles(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "flows/steps/__init__.py": "",
            "flows/steps/a.py": "from flows.steps import b\n",
            "flows/steps/b.py": "from flows.steps import c\n",
            "flows/steps/c.py": "def f():\n    from flows.steps import d\n",
            "flows/steps/d.py": "from flows.steps import c\n",
            "tests/test_x.py": "x = 1\n" * 50,  # tests are not product lines
        },
    )
    assert measures(root) == {  # a circle counts as one link of a chain
        "product lines": 5,
        "files": 8,
        "longest import chain": "3 modules: flows.steps.a -> flows.steps.b -> flows.steps.c",
        "import cycles": ["flows.steps.c <-> flows.steps.d"],
    }


# ---------------------------------------------------------------------------------- the measures


_HOPS_DRIVER = r"""
import asyncio, json, os, sys, traceback
root = os.path.realpath(sys.argv[1])
record = sys.argv[2]
original = asyncio.create_subprocess_exec
async def spy(*args, **kwargs):
    if not os.path.exists(record) and "flows.steps" in [str(a) for a in args]:
        frames = [(f.filename, f.name) for f in traceback.extract_stack()]
        with open(record, "w") as out:
            json.dump({"frames": frames, "args": [str(a) for a in args]}, out)
    return await original(*args, **kwargs)
asyncio.create_subprocess_exec = spy
sys.argv = ["flows.data_pipeline", *sys.argv[3:]]
import runpy
try:
    runpy.run_module("flows.data_pipeline", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
"""


def measure_hops(root: Path) -> tuple[list[str], int]:
    """The files one step crosses (in call order) and the hops between them (see the docstring)."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "in.csv").write_text("id,region,amount\n1,north,2.5\n2,south,4\n", "utf-8")
        record = work / "stack.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIOP_"))}
        env.update(PYTHONPATH=str(root), AIOP_BACKEND="local", AIOP_PREFECT_SERVER="embedded")
        env.update(AIOP_WORK_DIR=str(work / "work"), PREFECT_HOME=str(work / "prefect"))
        command = [sys.executable, "-c", _HOPS_DRIVER, str(root), str(record)]
        command += ["--input", str(work / "in.csv"), "--output", str(work / "out")]
        done = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        if not record.exists():
            raise RuntimeError(f"the pipeline started no step process:\n{done.stderr[-2000:]}")
        data = json.loads(record.read_text("utf-8"))
    real = os.path.realpath(root)
    files = []
    for filename, _function in data["frames"]:
        path = os.path.realpath(filename)
        if path.startswith(real + os.sep) and "/tests/" not in path:
            relative = os.path.relpath(path, real)
            if Path(relative).parts[0] in LAYERS and (not files or files[-1] != relative):
                files.append(relative)
    args = data["args"]
    step = args[args.index("flows.steps") + 1]
    files += ["flows/steps/__main__.py", f"flows/steps/{step}.py"]
    return files, len(files) - 1


def measures(root: Path) -> dict[str, object]:
    """Product lines and files, the longest import chain and the import cycles under ``root``."""
    paths = [p for layer in LAYERS for p in sorted((root / layer).rglob("*.py"))]
    graph = runtime_graph(root)
    chain = longest_chain(graph)
    return {
        "product lines": sum(len(p.read_bytes().splitlines()) for p in paths),
        "files": len(paths),
        "longest import chain": f"{len(chain)} modules: {' -> '.join(chain)}",
        "import cycles": [" <-> ".join(group) for group in cycles(graph)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.test_layers", description=__doc__)
    parser.add_argument("--root", type=Path, default=ROOT, help="source tree (default: this one)")
    parser.add_argument("--hops", action="store_true", help="also run one pipeline and trace it")
    options = parser.parse_args(argv)
    root = options.root.resolve()
    for key, value in measures(root).items():
        if isinstance(value, list):
            print(f"{key}: {len(value)}")
            for item in value:
                print(f"  {item}")
        else:
            print(f"{key}: {value}")
    if options.hops:
        files, hops = measure_hops(root)
        print(f"one step: {len(set(files))} files, {hops} hops")
        for file in files:
            print(f"  {file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
