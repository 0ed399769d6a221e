"""The column to group by when none is given, chosen from the first records before any step."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.steps import group_by
from flows.steps._io import DataError
from flows.steps.group_by import choose_group_by
from flows.steps.schema import parse_schema

ORDERS = Path(__file__).parents[1] / "fixtures" / "orders.csv"


def test_two_text_columns_are_named_and_the_fix_given() -> None:
    with pytest.raises(DataError) as info:
        choose_group_by(ORDERS)
    message = str(info.value)
    assert "cannot tell which column to group by: 'region', 'status' each have 2 to 50" in message
    assert "in the first 240 rows" in message and message.endswith("e.g. --group-by region")


def test_the_schema_decides_which_columns_are_text() -> None:
    declared = {e.column: e for e in parse_schema("status: integer\n")}
    assert choose_group_by(ORDERS, declared).column == "region"
    declared = {e.column: e for e in parse_schema("status: integer\nunit_price: string\n")}
    with pytest.raises(DataError, match="'region', 'unit_price' each have"):
        choose_group_by(ORDERS, declared)


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("id,g,v\n1,a,1\n2,b,2\n3,NA,3\n", "g"),  # null tokens are no group
        ("g,price\na,$4.00\nb,$5.00\n", "g"),  # money in another form is a measure
        ("g,day\na,03/15/2024\nb,03/16/2024\n", "g"),  # so are dates
        ("g,zip\na,02134\nb,10001\n", None),  # codes are text: two candidates
        ("g,k\na,x\na,x\n", None),  # one value is no grouping
    ],
)
def test_only_text_with_2_to_50_values_qualifies(
    tmp_path: Path, text: str, column: str | None
) -> None:
    src = tmp_path / "in.csv"
    src.write_text(text, encoding="utf-8")
    if column is None:
        with pytest.raises(DataError, match="cannot tell which column to group by"):
            choose_group_by(src)
    else:
        assert choose_group_by(src).column == column


def test_more_than_50_values_is_no_group_and_only_the_start_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "in.csv"
    rows = "".join(f"{i},k{i % 3},n{i}\n" for i in range(400))
    src.write_text("id,k,name\n" + rows + '999,"open\n', encoding="utf-8")
    choice = choose_group_by(src)
    assert choice.column == "k" and "in the first 400 rows" in choice.reason
    monkeypatch.setattr(group_by, "SAMPLE_BYTES", 1000)  # a cut inside a record: those before
    head = src.read_bytes()[:1000]
    complete = head[: head.rindex(b"\n") + 1].count(b"\n") - 1
    choice = choose_group_by(src)
    assert choice.column == "k" and f"in the first {complete} rows" in choice.reason
    monkeypatch.setattr(group_by, "SAMPLE_ROWS", 10)  # ten names are few enough to group by
    with pytest.raises(DataError, match=r"'k', 'name' each have 2 to 50 .* first 10 rows"):
        choose_group_by(src)


def test_the_option_is_written_as_a_shell_reads_it() -> None:
    assert group_by.group_by_option("a b") == "--group-by 'a b'"
    assert group_by.group_by_option("--x") == "--group-by=--x"
