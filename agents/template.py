"""Command templates: an agent's argument list with named parameters.

The syntax, in full:

* A **string item** renders to exactly one argument. ``{name}`` is replaced by the value of the
  parameter ``name``; ``{{`` and ``}}`` are literal braces (``"print({{1: 2}})"`` renders
  ``print({1: 2})``). Nothing else is allowed between braces: no ``{name!r}``, ``{name:>4}``,
  ``{name.attr}`` or ``{}``.
* A **mapping item** ``{optional: [item, ...]}`` is a group of string items rendered only when the
  parameters it names are given: all of them given renders the group, none given renders nothing,
  some but not all is an error (they go together). It must name at least one parameter.

Every parameter a template names must be declared by the agent (``parameters:``), and a parameter
named outside an ``optional`` group must be required or have a default -- both are checked when the
definition is loaded, so a typo never reaches a run.

Examples:
    >>> template = CommandTemplate.model_validate(
    ...     ["python", "-m", "flows.steps", "validate", "--input", "{input}",
    ...      {"optional": ["--schema", "{schema}"]}, "--output", "{output}"]
    ... )
    >>> sorted(template.parameters())
    ['input', 'output', 'schema']
    >>> template.render({"input": "/in/a.csv", "output": "/out"})
    ['python', '-m', 'flows.steps', 'validate', '--input', '/in/a.csv', '--output', '/out']
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, RootModel, model_validator

from adapters.errors import InvalidInputError

__all__ = ["CommandTemplate", "OptionalArgs", "TemplateItem", "placeholders", "render_text"]

_PARAM_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_FORMATTER = string.Formatter()


def placeholders(text: str) -> list[str]:
    """The parameter names ``text`` refers to, in order.

    Raises:
        ValueError: an unmatched brace or a placeholder that is not a plain ``{name}``; the message
            says how to write it.

    Examples:
        >>> placeholders("--rows={rows} {{literal}} {seed}")
        ['rows', 'seed']
    """
    names = []
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError:
        raise ValueError(
            f"{text!r} has an unmatched '{{' or '}}'; write '{{{{' or '}}}}' for a literal brace"
        ) from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion or not _PARAM_RE.match(field):
            shown = (
                "{"
                + field
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            raise ValueError(
                f"{text!r} has the placeholder {shown!r}; write a plain parameter name such as"
                " '{input}' (lower-case letters, digits, '_'), or '{{' and '}}' for literal braces"
            )
        names.append(field)
    return names


def render_text(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each ``{name}`` replaced by ``values[name]`` (``{{``/``}}`` are literal braces).

    Examples:
        >>> render_text("Read {report}/summary.json {{as JSON}}", {"report": "/out"})
        'Read /out/summary.json {as JSON}'
    """
    return _fill(text, values)


def _fill(text: str, values: Mapping[str, str]) -> str:
    out = []
    for literal, field, _spec, _conversion in _FORMATTER.parse(text):
        out.append(literal)
        if field is not None:
            out.append(values[field])
    return "".join(out)


class OptionalArgs(BaseModel):
    """A group of arguments rendered only when the parameters it names are given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    optional: tuple[str, ...]

    @model_validator(mode="after")
    def _names_a_parameter(self) -> OptionalArgs:
        if not self.optional:
            raise ValueError(
                "an optional group is empty; list its arguments, e.g. ['--schema', '{schema}']"
            )
        names = [n for item in self.optional for n in placeholders(item)]
        if not names:
            raise ValueError(
                f"the optional group {list(self.optional)} names no parameter, so it would always"
                " render; make its items plain strings, or add the parameter it depends on"
            )
        return self

    def parameters(self) -> list[str]:
        """The parameters the group depends on, in order of appearance, each once."""
        return list(dict.fromkeys(n for item in self.optional for n in placeholders(item)))


TemplateItem = str | OptionalArgs


class CommandTemplate(RootModel[tuple[TemplateItem, ...]]):
    """An argument-list template (see the module docstring for the syntax).

    Examples:
        >>> t = CommandTemplate.model_validate(["echo", {"optional": ["--n", "{n}"]}])
        >>> t.render({}), t.render({"n": "3"})
        (['echo'], ['echo', '--n', '3'])
    """

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "command is one string; write it as a YAML list of arguments, e.g."
                " [python, -m, flows.steps, validate, --input, '{input}']"
            )
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(
                "command must be a non-empty YAML list of arguments, e.g. [python, -m, flows.steps]"
            )
        for number, item in enumerate(value, start=1):
            if isinstance(item, bool) or not isinstance(
                item, str | int | float | Mapping | OptionalArgs
            ):
                raise ValueError(
                    f"item {number} ({item!r}) is neither an argument (a string) nor an"
                    " {optional: [...]} group; quote it or fix its shape"
                )
            if isinstance(item, Mapping) and set(item) != {"optional"}:
                raise ValueError(
                    f"item {number} ({dict(item)!r}) is a mapping but not an optional group;"
                    " write it as {optional: ['--flag', '{param}']}"
                )
            if isinstance(item, str):
                try:
                    placeholders(item)
                except ValueError as exc:
                    raise ValueError(f"item {number}: {exc}") from None
        if isinstance(value[0], Mapping | OptionalArgs) or not str(value[0]).strip():
            raise ValueError("the first item must be the program to run, e.g. python")
        return [str(i) if isinstance(i, int | float) else i for i in value]

    def items(self) -> tuple[TemplateItem, ...]:
        """The template's items."""
        return self.root

    def parameters(self) -> set[str]:
        """Every parameter the template names."""
        return set(self.required_parameters()) | {
            n for item in self.root if isinstance(item, OptionalArgs) for n in item.parameters()
        }

    def required_parameters(self) -> list[str]:
        """Parameters named outside optional groups (the template cannot render without them)."""
        return list(
            dict.fromkeys(
                n for item in self.root if isinstance(item, str) for n in placeholders(item)
            )
        )

    def render(self, values: Mapping[str, str]) -> list[str]:
        """The argument list for ``values`` (parameter name -> text; absent means not given).

        Raises:
            InvalidInputError: a required parameter is missing, or an optional group's parameters
                are given only in part.
        """
        return list(self._render(values))

    def _render(self, values: Mapping[str, str]) -> Iterator[str]:
        for item in self.root:
            if isinstance(item, str):
                missing = [n for n in placeholders(item) if n not in values]
                if missing:
                    raise InvalidInputError(
                        f"parameter {missing[0]!r} is required (it fills {item!r}); give it, e.g."
                        f" {missing[0]}=..."
                    )
                yield _fill(item, values)
                continue
            names = item.parameters()
            given = [n for n in names if n in values]
            if not given:
                continue
            if len(given) != len(names):
                missing = [n for n in names if n not in values]
                raise InvalidInputError(
                    f"parameters {', '.join(names)} go together (they fill"
                    f" {list(item.optional)}); {', '.join(given)} given without"
                    f" {', '.join(missing)}: give all of them or none"
                )
            yield from (_fill(arg, values) for arg in item.optional)
