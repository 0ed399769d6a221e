"""Only the settings module reads the platform's settings: no ``AIOP_*`` access anywhere else.

Every product module (adapters/, agents/, flows/) is read from the source. Outside the two allowed
modules, it fails on

* any string that names an ``AIOP_`` variable (f-string parts included; docstrings, which only
  document the settings, are not code and are skipped), and
* any ``os.environ`` / ``os.getenv`` access whose key is built from the settings' names
  (``variable_name(...)``, ``ENV_PREFIX``), which would read a setting around the object, or
  names a standard variable a setting is read from (``OTEL_*``, ``TRACEPARENT``).

Allowed: ``adapters/settings.py`` (the settings object) and ``flows/steps/_environment.py`` (the
step programs' side of the step environment: they run in containers without pydantic; ADR 0020).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("adapters", "agents", "flows")
ALLOWED = {"adapters/settings.py", "flows/steps/_environment.py"}
#: A module that holds none of these words can neither name nor read a setting.
_MAY_ACCESS = ("AIOP_", "environ", "getenv")
_ENV_METHODS = {"get", "pop", "setdefault", "__getitem__", "__setitem__", "__delitem__"}


def settings_access(root: Path = ROOT) -> list[str]:
    """``file:line what`` for every access to an ``AIOP_*`` setting outside :data:`ALLOWED`."""
    found: list[str] = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative in ALLOWED:
                continue
            text = path.read_text(encoding="utf-8")
            if not any(word in text for word in _MAY_ACCESS):
                continue  # nothing to find: no need to parse it
            tree = ast.parse(text, filename=relative)
            found += [f"{relative}:{line} {what}" for line, what in _violations(tree)]
    return found


def _violations(tree: ast.AST) -> list[tuple[int, str]]:
    docstrings = _docstrings(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "AIOP_" in node.value
            and id(node) not in docstrings
        ):
            found.append((node.lineno, f"names a setting: {node.value.strip()[:60]!r}"))
        key = _environment_key(node)
        if key is not None and _built_from_settings_names(key):
            found.append(
                (node.lineno, f"reads a setting from the environment: {ast.unparse(node)}")
            )
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _environment_key(node: ast.AST) -> ast.AST | None:
    """The key of ``os.environ[k]``, ``os.environ.get(k)`` (and pop, setdefault), ``os.getenv(k)``."""
    if isinstance(node, ast.Subscript) and _is_environ(node.value):
        return node.slice
    if isinstance(node, ast.Call) and node.args:
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr in _ENV_METHODS and _is_environ(func.value):
                return node.args[0]
            if func.attr == "getenv":
                return node.args[0]
        if isinstance(func, ast.Name) and func.id == "getenv":
            return node.args[0]
    return None


def _built_from_settings_names(key: ast.AST) -> bool:
    for part in ast.walk(key):
        if isinstance(part, ast.Name) and part.id in {"variable_name", "ENV_PREFIX"}:
            return True
        if isinstance(part, ast.Attribute) and part.attr in {"variable_name", "ENV_PREFIX"}:
            return True
        if (
            isinstance(part, ast.Constant)
            and isinstance(part.value, str)
            and ("AIOP_" in part.value or part.value.upper().startswith(("OTEL_", "TRACEPARENT")))
        ):
            return True
    return False


def test_no_module_but_the_settings_module_touches_a_setting() -> None:
    assert settings_access() == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # a literal key is both a name and an access
        ('import os\nx = os.environ.get("AIOP_BACKEND")', 2),
        ('import os\nx = os.getenv("AIOP_DEBUG", "")', 2),
        ('import os\nos.environ["AIOP_CHAOS"] = "kind=slow"', 2),
        ('x = f"set AIOP_{name.upper()} to fix it"', 1),
        ('import os\nx = os.environ[variable_name("backend")]', 1),
        ('import os\nx = os.environ.get(ENV_PREFIX + "DEBUG")', 1),
        ('"""Reads ``AIOP_BACKEND`` (a docstring)."""\nx = 1', 0),
        ("x = f\"set {variable_name('debug')}=1\"", 0),
        ('import os\nx = os.environ.get("PREFECT_API_URL")', 0),
        # the standard variables tracing settings are read from count as settings too
        ('import os\nx = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")', 1),
        ('import os\nx = os.getenv("TRACEPARENT")', 1),
    ],
)
def test_the_rule_sees_each_kind_of_access(source: str, expected: int) -> None:
    assert len(_violations(ast.parse(source))) == expected
