"""Command templates: the syntax renders exactly, and malformed templates say how to fix them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from adapters.errors import InvalidInputError
from agents.template import CommandTemplate, placeholders


def template(*items: Any) -> CommandTemplate:
    return CommandTemplate.model_validate(list(items))


@pytest.mark.parametrize(
    ("items", "values", "expected"),
    [
        (["echo", "{a}"], {"a": "x y"}, ["echo", "x y"]),
        (["echo", "--n={a}"], {"a": "3"}, ["echo", "--n=3"]),
        (["echo", "{a}{b}"], {"a": "1", "b": "2"}, ["echo", "12"]),
        (["python", "-c", "print({{1: 2}})"], {}, ["python", "-c", "print({1: 2})"]),
        (["echo", {"optional": ["--s", "{s}"]}], {}, ["echo"]),
        (["echo", {"optional": ["--s", "{s}"]}], {"s": "v"}, ["echo", "--s", "v"]),
        (["echo", {"optional": ["-a", "{a}", "-b", "{b}"]}, "end"], {}, ["echo", "end"]),
        (
            ["echo", {"optional": ["-a", "{a}", "-b", "{b}"]}],
            {"a": "1", "b": "2"},
            ["echo", "-a", "1", "-b", "2"],
        ),
        (["echo", 1, 2.5], {}, ["echo", "1", "2.5"]),
    ],
)
def test_renders_exact_args(items: list[Any], values: dict[str, str], expected: list[str]) -> None:
    assert template(*items).render(values) == expected


def test_names_its_parameters_required_and_optional() -> None:
    t = template("run", "{input}", {"optional": ["--schema", "{schema}"]}, "{input}")
    assert t.parameters() == {"input", "schema"}
    assert t.required_parameters() == ["input"]


def test_a_missing_required_parameter_is_named_with_the_item_it_fills() -> None:
    with pytest.raises(
        InvalidInputError, match=r"parameter 'input' is required \(it fills '--in=\{input\}'\)"
    ):
        template("run", "--in={input}").render({})


def test_an_optional_group_given_in_part_is_refused() -> None:
    t = template("run", {"optional": ["--rows", "{rows}", "--seed", "{seed}"]})
    with pytest.raises(InvalidInputError, match=r"rows, seed go together.*rows given without seed"):
        t.render({"rows": "10"})


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("echo {a}", "write it as a YAML list"),
        ([], "non-empty YAML list"),
        (["echo", True], "item 2 .* quote it"),
        (["echo", {"flag": "--x"}], "item 2 .* write it as \\{optional"),
        (["echo", "{a!r}"], "placeholder '\\{a!r\\}'"),
        (["echo", "{a:>3}"], "placeholder '\\{a:>3\\}'"),
        (["echo", "{a.b}"], "placeholder '\\{a.b\\}'"),
        (["echo", "{}"], "placeholder '\\{\\}'"),
        (["echo", "{Input}"], "placeholder '\\{Input\\}'"),
        (["echo", "{a"], "unmatched"),
        (["echo", "a}"], "unmatched"),
        ([{"optional": ["{a}"]}], "first item must be the program"),
        (["echo", {"optional": []}], "optional group is empty"),
        (["echo", {"optional": ["--verbose"]}], "names no parameter"),
    ],
)
def test_malformed_templates_say_how_to_fix_them(items: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CommandTemplate.model_validate(items)


def test_placeholders_lists_names_in_order_and_skips_literal_braces() -> None:
    assert placeholders("{b}-{{x}}-{a}-{b}") == ["b", "a", "b"]
