"""The reference page's Dagger error table is generated from the adapter's one table."""

from __future__ import annotations

from pathlib import Path

from adapters.dagger.errors import ERROR_RULES, TABLE, reference_markdown

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "errors.md"


def test_the_page_holds_the_table_generated_from_error_rules() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert TABLE.regenerate(page, reference_markdown()) == page, (
        "docs/reference/errors.md is out of date: run aiop errors --write docs/reference/errors.md"
    )


def test_every_rule_has_one_row_in_table_order() -> None:
    page = PAGE.read_text(encoding="utf-8")
    table = page[page.index(TABLE.begin) : page.index(TABLE.end)]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1].rsplit(".", 1)[-1] for row in rows] == [
        rule.foreign.__qualname__ for rule in ERROR_RULES
    ]


def test_a_changed_rule_makes_the_page_disagree() -> None:
    page = PAGE.read_text(encoding="utf-8")
    stale = page.replace("the CLI could not be downloaded", "download failed", 1)
    assert stale != page and TABLE.regenerate(stale, reference_markdown()) == page
