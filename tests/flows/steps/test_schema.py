"""The --schema file format (a tiny YAML subset) and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.steps._io import DataError
from flows.steps.schema import load_schema, parse_schema, resolve_schema


def test_parse_schema_lines_comments_and_quotes() -> None:
    text = (
        "---\n"
        "# a comment line\n"
        "id: integer\n"
        "\n"
        "amount:   Float   # trailing comment\n"
        '"signup: date": date\n'
        "'it''s': string\n"
        "ratio#2: float\n"
    )
    entries = parse_schema(text, "s.yaml")
    assert [(e.line, e.column, e.type) for e in entries] == [
        (3, "id", "integer"),
        (5, "amount", "float"),
        (6, "signup: date", "date"),
        (7, "it's", "string"),
        (8, "ratio#2", "float"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id: integer\namount: money\n", "s.yaml:2: unknown type 'money' for column 'amount'"),
        ("id: integer\namount\n", "s.yaml:2: expected 'column: type'"),
        (": integer\n", "s.yaml:1: expected 'column: type'"),
        ("id: integer\nid: float\n", "s.yaml:2: column 'id' is already typed on line 1"),
        ('"id: integer\n', "s.yaml:1: expected 'column: type'"),
    ],
)
def test_parse_schema_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DataError, match="^" + message.replace("(", r"\(")) as info:
        parse_schema(text, "s.yaml")
    assert "\n" not in str(info.value)


def test_unknown_type_lists_the_allowed_types() -> None:
    with pytest.raises(DataError) as info:
        parse_schema("a: int\n", "s.yaml")
    assert "allowed types: boolean, integer, float, date, timestamp, string" in str(info.value)


def test_unknown_column_lists_the_input_columns() -> None:
    entries = parse_schema("a: integer\nzz: date\n", "s.yaml")
    with pytest.raises(
        DataError, match=r"s.yaml:2: unknown column 'zz'; the input's columns are: a, b"
    ):
        resolve_schema(entries, ["a", "b"], "s.yaml")


def test_load_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("b: date\n", encoding="utf-8")
    assert load_schema(path, ["a", "b"]) == {"b": "date"}
    with pytest.raises(DataError, match="not found"):
        load_schema(tmp_path / "missing.yaml", ["a"])
