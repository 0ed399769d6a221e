"""The sections of an agent definition: parameters, retry, resources and llm.

Each is a frozen pydantic model that forbids unknown fields. ``retry:`` is the retry policy itself
(:class:`~adapters.retry_policy.RetryPolicy`) plus the agent's transient exit codes, and
``breaker:`` is :class:`~adapters.breakers.policy.BreakerPolicy` (:mod:`agents.spec`): the same
models, bounds and messages as the settings and the code.

Examples:
    >>> RetrySection(attempts=2, transient_exit_codes=[75]).policy().attempts
    2
    >>> ResourceHints(memory="512MiB").memory_bytes
    536870912
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.errors import InvalidInputError
from adapters.retry_policy import RetryPolicy
from agents.template import placeholders, render_text

__all__ = [
    "MAX_TOKENS",
    "LlmBudgetSection",
    "LlmInputSection",
    "LlmOutputSection",
    "LlmSection",
    "Parameter",
    "ResourceHints",
    "RetrySection",
    "check_path_template",
    "host_path",
    "split_root",
]

#: The most tokens one llm run may be allowed (input and output, as the provider counts them).
MAX_TOKENS = 10_000_000
_FORMATTER = string.Formatter()
_BINDING_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$")
_MEMORY_UNITS = {
    "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}  # fmt: skip


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Parameter(_Section):
    """One named parameter of an agent (what fills ``{name}`` in its command or prompt)."""

    description: str = Field(min_length=1, description="What the value is, in a few words.")
    required: bool | None = Field(
        default=None, description="Must be given (default: true unless a default is set)."
    )
    default: str | None = Field(default=None, description="Value used when none is given.")

    @model_validator(mode="after")
    def _required_or_default(self) -> Parameter:
        if self.required and self.default is not None:
            raise ValueError(
                "a parameter cannot be both required and have a default; drop 'required: true'"
                " or the default"
            )
        return self

    @property
    def is_required(self) -> bool:
        """True when a run must give this parameter."""
        return self.default is None if self.required is None else self.required


class RetrySection(RetryPolicy):
    """``retry:`` -- the retry policy's fields, plus the exit codes that mean "try again" for this
    agent."""

    transient_exit_codes: frozenset[Annotated[int, Field(ge=1, le=255)]] = frozenset()

    def policy(self) -> RetryPolicy:
        """The retry policy this section declares. A run applies the operator's retry settings
        over it (:meth:`adapters.settings.Settings.retry_policy`: the operator wins over an agent
        file's defaults)."""
        given = self.model_fields_set - {"transient_exit_codes"}
        return RetryPolicy(**{name: getattr(self, name) for name in given})


class ResourceHints(_Section):
    """``resources:`` -- what the agent needs; hints for schedulers and people, not enforced."""

    cpu: Annotated[float, Field(gt=0)] | None = Field(default=None, description="CPU cores.")
    memory: str | None = Field(default=None, description="Memory, e.g. '512MiB' or '2GB'.")
    gpu: Annotated[int, Field(ge=0)] = Field(default=0, description="GPUs.")

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY_RE.match(value.strip()):
            raise ValueError(
                f"{value!r} is not an amount of memory; write a number and a unit, e.g. 512MiB or 2GB"
            )
        return value

    @property
    def memory_bytes(self) -> int | None:
        """``memory`` in bytes (None when not given)."""
        if self.memory is None:
            return None
        match = _MEMORY_RE.match(self.memory.strip())
        assert match is not None
        return int(float(match[1]) * _MEMORY_UNITS[match[2] or "B"])


def split_root(template: str) -> tuple[str | None, str]:
    """A host path template's root and the rest: ``{report}/summary.md`` -> ``("report",
    "summary.md")``; a template that does not start with a whole ``{parameter}`` path component
    has no root (the working directory is its root).

    Examples:
        >>> split_root("{report}/summary.md"), split_root("data/{name}.csv")
        (('report', 'summary.md'), (None, 'data/{name}.csv'))
    """
    parsed = list(_FORMATTER.parse(template))
    if parsed and parsed[0][0] == "" and parsed[0][1]:
        rest = template[len(parsed[0][1]) + 2 :]
        if rest == "" or rest.startswith("/"):
            return parsed[0][1], rest.lstrip("/")
    return None, template


def _escapes(relative: str) -> str | None:
    """Why ``relative`` (a path under a root) does not stay under it, or None."""
    if relative.startswith("~"):
        return "starts in a home folder"
    if relative.startswith("/") or Path(relative).is_absolute():
        return "is an absolute path"
    if ".." in Path(relative).parts:
        return "climbs out with '..'"
    return None


def check_path_template(template: str, *, what: str, outside_allowed: bool = False) -> None:
    """Refuse a host path template that leaves its root (see :func:`split_root`).

    Raises:
        ValueError: the path is absolute or starts with ``~`` without a ``{parameter}`` root
            (unless ``outside_allowed``), or climbs out of its root with ``..``.
    """
    root, rest = split_root(template)
    literal = render_text(rest, _Dummy())
    why = _escapes(literal)
    if why is None or (root is None and outside_allowed and "'..'" not in why):
        return
    where = f"the folder {{{root}}} names" if root else "the working directory"
    example = "notes.txt" if what.startswith("input") else "summary.md"
    raise ValueError(
        f"{what} {template!r} {why}: it must stay inside {where}. Write it relative to"
        f" the working directory (data/{example}) or start it with the parameter that"
        f" names its folder ({{report}}/{example})"
        + (
            "; an input that must send a host path outside the working directory to the"
            " model says so with outside_working_tree: true"
            if what.startswith("input")
            else ""
        )
    )


class _Dummy(dict[str, str]):
    """Fills every placeholder with a plain name, to check a template's literal parts."""

    def __missing__(self, key: str) -> str:
        return "x"


def host_path(
    template: str,
    values: Mapping[str, str],
    *,
    what: str,
    cwd: Path | None = None,
    outside_allowed: bool = False,
) -> str:
    """The absolute host path ``template`` names for ``values``, kept inside its root.

    The root is the folder its leading ``{parameter}`` names (the run's choice) or, without one,
    the working directory ``cwd``. The part after the root, parameters filled in, must stay
    under it: no absolute path, no ``..``.

    Raises:
        InvalidInputError: the filled-in path leaves its root.

    Examples:
        >>> host_path("{report}/{name}.md", {"report": "/data", "name": "s"}, what="output x")
        '/data/s.md'
    """
    base = Path.cwd() if cwd is None else cwd
    root, rest = split_root(template)
    if root is None and outside_allowed:
        return str(Path(render_text(template, values)).expanduser().absolute())
    filled = render_text(rest, values)
    why = _escapes(filled)
    if why is not None:
        where = (
            f"the folder {root}={values[root]!r} names" if root else f"the working directory {base}"
        )
        raise InvalidInputError(
            f"{what} {template!r} becomes {filled!r} under its root, which {why}: it must stay"
            f" inside {where}; give parameter values that name a place inside it"
        )
    top = Path(values[root]).expanduser().absolute() if root else base
    return os.path.normpath(top / filled) if filled else str(top)


class LlmInputSection(_Section):
    """One entry of ``llm.inputs``: a folder, a file or a text given to the model's environment.

    What a ``directory`` or ``file`` input names is uploaded whole to the engine, and the model
    may read any of it and send it to the provider. Its path stays inside the working directory
    or the folder its leading ``{parameter}`` names, unless ``outside_working_tree: true``.
    """

    kind: Literal["directory", "file", "string"] = Field(
        description="directory or file (a host path, uploaded as a snapshot), or string (text)."
    )
    value: str = Field(
        min_length=1, description="Host path or text, with {parameter} placeholders."
    )
    description: str = Field(min_length=1, description="What it is, as the model reads it.")
    outside_working_tree: bool = Field(
        default=False,
        description="A host path outside the working directory (absolute, or under ~) is"
        " allowed: everything under it may reach the model's provider.",
    )

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        placeholders(value)
        return value

    @model_validator(mode="after")
    def _stays_inside(self) -> LlmInputSection:
        if self.kind != "string":
            check_path_template(
                self.value, what="input path", outside_allowed=self.outside_working_tree
            )
        elif self.outside_working_tree:
            raise ValueError("outside_working_tree is for directory and file inputs; remove it")
        return self

    def host_value(self, values: Mapping[str, str], *, name: str) -> str:
        """The text (``string``) or absolute host path this input gives for ``values``."""
        if self.kind == "string":
            return render_text(self.value, values)
        return host_path(
            self.value,
            values,
            what=f"input {name!r} path",
            outside_allowed=self.outside_working_tree,
        )


class LlmOutputSection(_Section):
    """One entry of ``llm.outputs``: a folder or file the model must produce, and where it goes.

    The path stays inside its root: the folder its leading ``{parameter}`` names
    (``{report}/summary.md``), or the working directory.
    """

    kind: Literal["directory", "file"] = Field(description="directory or file.")
    path: str = Field(min_length=1, description="Host path, with {parameter} placeholders.")
    description: str = Field(min_length=1, description="What to put there, as the model reads it.")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        placeholders(value)
        check_path_template(value, what="output path")
        return value

    def host_value(self, values: Mapping[str, str], *, name: str) -> str:
        """The absolute host path this output is written to for ``values``."""
        return host_path(self.path, values, what=f"output {name!r} path")


class LlmBudgetSection(_Section):
    """``llm.budget:`` -- what one run may spend; the step stops with an error past either limit."""

    max_api_calls: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=10, description="Model API calls (steps of the loop) per run."
    )
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] = Field(
        default=100_000,
        description="Tokens (input + output, as the provider counts) per run, at most"
        f" {MAX_TOKENS:,}.",
    )


class LlmSection(_Section):
    """``llm:`` -- what an ``llm`` agent asks (run through Dagger's ``dag.llm()``)."""

    prompt: str = Field(min_length=1, description="The task, with {parameter} placeholders.")
    model: str | None = Field(
        default=None, description="Model name; the engine's default if unset."
    )
    key: str | None = Field(
        default=None,
        description="The provider key's name (one of the agent's secrets); default: the one"
        " provider key among them.",
    )
    inputs: dict[str, LlmInputSection] = Field(
        default_factory=dict, description="Input name -> what the model is given."
    )
    outputs: dict[str, LlmOutputSection] = Field(
        default_factory=dict, description="Output name -> what the model must produce."
    )
    budget: LlmBudgetSection = Field(default_factory=LlmBudgetSection)
    trace_content: bool = Field(
        default=False,
        description="Put the prompt and the model's last reply on the run's trace (masked like"
        " logs), and let the Dagger engine record its own spans of the model's loop. Off: no"
        " prompt, reply or key appears anywhere on the trace.",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        placeholders(value)
        return value

    @field_validator("inputs", "outputs")
    @classmethod
    def _binding_names(cls, value: dict[str, object]) -> dict[str, object]:
        for name in value:
            if not _BINDING_RE.match(name):
                raise ValueError(
                    f"{name!r} is not a usable input or output name; use lower-case letters,"
                    " digits and '_', starting with a letter (e.g. report)"
                )
        return value

    @model_validator(mode="after")
    def _distinct(self) -> LlmSection:
        both = sorted(set(self.inputs) & set(self.outputs))
        if both:
            raise ValueError(f"{both[0]!r} is both an input and an output; rename one of them")
        return self

    def placeholders(self) -> set[str]:
        """Every parameter the prompt, the inputs and the outputs refer to."""
        used = set(placeholders(self.prompt))
        for item in self.inputs.values():
            used |= set(placeholders(item.value))
        for out in self.outputs.values():
            used |= set(placeholders(out.path))
        return used
