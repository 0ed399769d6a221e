"""The command-line reference shows every command's real ``--help``."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import aiop
from flows.cli._help import blocks, regenerate

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "cli.md"


def test_the_page_holds_the_help_of_every_command() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert regenerate(aiop, page) == page, (
        "docs/reference/cli.md is out of date: run aiop cli-reference --write docs/reference/cli.md"
    )


def test_every_command_has_a_section_with_its_block() -> None:
    page = PAGE.read_text(encoding="utf-8")
    for block, _ in blocks(aiop):
        assert page.count(block.begin) == 1, block.name
    assert "Usage: aiop agents run [OPTIONS] NAME" in page


def test_a_changed_help_makes_the_page_disagree() -> None:
    page = PAGE.read_text(encoding="utf-8")
    stale = page.replace("skip the docs build check", "skip docs", 1)
    assert stale != page and regenerate(aiop, stale) == page


def test_a_missing_block_is_named() -> None:
    page = PAGE.read_text(encoding="utf-8")
    [(block, _)] = [b for b in blocks(aiop) if b[0].name == "aiop-verify"]
    with pytest.raises(ValueError, match="aiop-verify"):
        regenerate(aiop, page.replace(block.begin, "", 1))
