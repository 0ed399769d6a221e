"""Loading agent definitions: YAML files in folders, each validated, problems reported per file.

Definitions are read from the shipped folder (``agents/definitions``) and then from each extra
folder the caller gives (the ``agents_path`` setting), ``*.yaml`` and ``*.yml`` in name order. A file that
cannot be used becomes a :class:`DefinitionProblem` -- one paragraph naming the file, the field and
the fix -- and never stops the other files from loading. When two files define the same name, the
first one loaded is kept and the second is reported.

Examples:
    >>> agents, problems = load_definitions([SHIPPED_DEFINITIONS])
    >>> problems
    []
    >>> "validate-duckdb" in [a.name for a in agents]
    True
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from adapters.breakers.policy import BreakerPolicy
from adapters.policy import problem as policy_problem
from adapters.settings import variable_name
from agents.errors import DefinitionError
from agents.sections import LlmSection, Parameter, ResourceHints, RetrySection
from agents.spec import DEFINITION_ERROR, AgentSpec

__all__ = [
    "SHIPPED_DEFINITIONS",
    "DefinitionError",
    "DefinitionProblem",
    "default_paths",
    "load_definitions",
    "load_file",
]

#: The folder of the definitions shipped with the platform.
SHIPPED_DEFINITIONS = Path(__file__).resolve().parent / "definitions"

_SUFFIXES = (".yaml", ".yml")
#: The sections that are policies (:mod:`adapters.policy`).
_POLICY_SECTIONS = ("retry", "breaker")
_FIELDS = tuple(AgentSpec.model_fields)
_EXAMPLES = {
    "name": "name: validate-duckdb",
    "description": "description: Checks a CSV against a schema",
    "capabilities": "capabilities: [validate]",
    "image": "image: python:3.12-slim",
    "command": "command: [python, -m, flows.steps, validate, --input, '{input}']",
    "prompt": "prompt: Summarize {report} in five lines",
}


@dataclass(frozen=True)
class DefinitionProblem:
    """Why one definition file was not loaded.

    Attributes:
        file: the file (or the folder, when the folder itself is the problem).
        message: one paragraph that starts with the file and names the field and the fix.
    """

    file: Path
    message: str

    def __str__(self) -> str:
        return self.message


def default_paths(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """The shipped folder, then every folder (or file) in ``extra`` (the ``agents_path`` setting,
    :meth:`adapters.settings.Settings.agent_paths`).

    Examples:
        >>> default_paths() == [SHIPPED_DEFINITIONS]
        True
    """
    return [SHIPPED_DEFINITIONS, *(Path(p).expanduser() for p in extra)]


def load_definitions(
    paths: Iterable[str | os.PathLike[str]] | None = None,
) -> tuple[list[AgentSpec], list[DefinitionProblem]]:
    """Load every definition in ``paths`` (folders or files; default :func:`default_paths`).

    Returns:
        The valid agents in load order, and one problem per file (or folder) that could not be used.

    Examples:
        >>> agents, problems = load_definitions()
        >>> sorted({c for a in agents for c in a.capabilities})[:3]
        ['aggregate', 'ingest', 'report']
    """
    agents: list[AgentSpec] = []
    problems: list[DefinitionProblem] = []
    seen: dict[str, Path] = {}
    for raw in default_paths() if paths is None else paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES and p.is_file())
        elif path.is_file():
            files = [path]
        else:
            problems.append(
                DefinitionProblem(
                    path,
                    f"{path}: no such folder or file; create it, or fix {variable_name('agents_path')}"
                    f" (folders separated by {os.pathsep!r})",
                )
            )
            continue
        for file in files:
            try:
                agent = load_file(file)
            except DefinitionError as exc:
                problems.append(DefinitionProblem(file, exc.message))
                continue
            first = seen.get(agent.name)
            if first is not None:
                problems.append(
                    DefinitionProblem(
                        file,
                        f"{file}: field 'name': agent {agent.name!r} is already defined in {first};"
                        " rename one of them (the one in the first file is kept)",
                    )
                )
                continue
            seen[agent.name] = file
            agents.append(agent)
    return agents, problems


def load_file(path: str | os.PathLike[str]) -> AgentSpec:
    """Load and validate one definition file.

    Raises:
        DefinitionError: unreadable file, bad YAML, or an invalid definition; the message names the
            file, the field and the fix.

    Examples:
        >>> load_file(SHIPPED_DEFINITIONS / "validate-duckdb.yaml").capabilities
        ('validate',)
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise DefinitionError(
            f"{file}: cannot be read ({reason}); fix the file or remove it"
        ) from None
    try:
        data = _parse(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise DefinitionError(
            f"{file}: is not valid YAML{where} ({problem}); fix the indentation or quote the value"
            " (a value with ':', '{' or '#' needs quotes)"
        ) from None
    if not isinstance(data, dict):
        got = "nothing" if data is None else f"a {type(data).__name__}"
        raise DefinitionError(
            f"{file}: holds {got}, not one agent; write one mapping of fields (name:, description:,"
            " capabilities:, image:, command: ...)"
        )
    try:
        agent = AgentSpec.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(describe(exc, file)) from None
    agent._source = file
    return agent


#: libyaml's loader where PyYAML was built with it: a tenth of the pure-Python one's time (16 ms
#: for the seven shipped definitions, which every run loads).
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", None)


def _parse(text: str) -> Any:
    """``yaml.safe_load(text)``, by libyaml when it is there; a file it refuses is read again by the
    pure-Python loader, so that the error, its line and its wording are always the same."""
    if _FAST_LOADER is not None:
        try:
            return yaml.load(text, Loader=_FAST_LOADER)  # a safe loader: plain data only
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def describe(exc: ValidationError, file: str | os.PathLike[str]) -> str:
    """One paragraph naming the file, each bad field, what is wrong and the fix."""
    parts = [_describe_one(err) for err in exc.errors(include_url=False)]
    return f"{file}: " + "; ".join(parts)


def _describe_one(err: Any) -> str:
    loc = [str(p) for p in err["loc"]]
    field = ".".join(loc) or "(top level)"
    kind, ctx = err["type"], err.get("ctx") or {}
    msg = str(err["msg"]).removeprefix("Value error, ")
    if len(loc) == 2 and loc[0] in _POLICY_SECTIONS and kind not in ("missing", "extra_forbidden"):
        # A policy's field: worded by the policy, as the settings and the code word it.
        return f"field {field!r}: {err.get('input')!r} {policy_problem(AgentSpec, err)}"
    if kind in ("value_error", DEFINITION_ERROR):
        return f"field {field!r}: {msg}"
    if kind == "missing":
        example = _EXAMPLES.get(loc[-1], f"{loc[-1]}: ...")
        return f"field {field!r}: is missing; add it, e.g. {example}"
    if kind == "extra_forbidden":
        known = _known_fields(loc)
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return (
            f"field {field!r}: is not a known field; {hint}remove it or fix the spelling"
            f" (known fields: {', '.join(known)})"
        )
    return f"field {field!r}: {msg}; {_fix(kind, ctx, err.get('input'))}"


def _known_fields(loc: list[str]) -> list[str]:
    sections: dict[str, Any] = {
        "retry": RetrySection,
        "breaker": BreakerPolicy,
        "resources": ResourceHints,
        "llm": LlmSection,
    }
    if len(loc) >= 2 and loc[0] in sections:
        return list(sections[loc[0]].model_fields)
    if len(loc) >= 3 and loc[0] == "parameters":
        return list(Parameter.model_fields)
    return list(_FIELDS)


def _fix(kind: str, ctx: Mapping[str, Any], value: Any) -> str:
    if kind == "string_type":
        if isinstance(value, bool | int | float):
            return f'quote the value, e.g. "{str(value).lower() if isinstance(value, bool) else value}"'
        return "write it as text"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "write a whole number"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return "write a number"
    if kind in ("bool_type", "bool_parsing"):
        return "write true or false"
    if kind == "literal_error":
        return f"use one of {ctx.get('expected', 'the allowed values')}"
    if kind in ("list_type", "tuple_type", "frozen_set_type", "set_type"):
        return "write it as a YAML list, e.g. [a, b]"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "write it as a mapping of 'key: value' lines"
    bounds = {
        "greater_than": ("gt", ">"),
        "greater_than_equal": ("ge", ">="),
        "less_than": ("lt", "<"),
        "less_than_equal": ("le", "<="),
    }
    if kind in bounds:
        key, op = bounds[kind]
        return f"use a value {op} {ctx.get(key)}"
    if kind == "too_short":
        return f"give at least {ctx.get('min_length', 1)}"
    return "see the agents guide for the expected shape"
