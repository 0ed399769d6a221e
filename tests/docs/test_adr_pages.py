"""The ADR index and timeline the docs hook generates: numbers once, dates, statuses, supersedes.

Runs the hook as MkDocs does (``on_files`` with a loaded config): on the repository's own ADRs, and
on a small project of three ADRs where one supersedes another.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.config import load_config
from mkdocs.structure.files import Files

ROOT = Path(__file__).resolve().parents[2]


HOOK = ROOT / "docs" / "hooks" / "adr.py"


def _generated(config_file: Path) -> dict[str, str]:
    """The generated pages, from the hooks and plugins ``config_file`` lists, run as MkDocs runs them."""
    config = load_config(config_file=str(config_file), plugins=[])  # the hooks only
    files = config.plugins.on_files(Files([]), config=config)
    return {
        f.src_uri: f.content_string
        for f in files
        if f.src_uri in ("adr/index.md", "adr/timeline.md")
    }


def test_the_repository_index_names_each_number_once_without_repeating_it() -> None:
    pages = _generated(ROOT / "mkdocs.yml")
    index = pages["adr/index.md"]
    rows = [line for line in index.splitlines() if re.match(r"\| \[\d{4}\]", line)]
    assert len(rows) >= 12, index
    for row in rows:
        number = row[3:7]
        assert row.count(number) == 2, row  # the link text and its file name, nothing else
        assert not re.search(rf"\]\s*\|\s*{number}\.", row), row
    timeline = pages["adr/timeline.md"]
    assert "0001 0001" not in timeline and "0001. " not in timeline, timeline


def test_the_timeline_groups_by_date_with_status_and_supersedes_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n", encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text(f"site_name: t\nhooks: [{HOOK}]\n", encoding="utf-8")
    adr = tmp_path / "adr"
    adr.mkdir()
    records = {
        "0001-first.md": ("superseded", "2026-01-02", ""),
        "0002-second.md": ("accepted", "2026-01-02", ""),
        "0003-third.md": ("accepted", "2026-02-10", "supersedes: [1]\n"),
    }
    for name, (status, date, extra) in records.items():
        title = f"{name[:4]}. The {name[5:-3]} decision"
        front = f"---\nstatus: {status}\ndate: {date}\n{extra}---\n# {title}\n"
        (adr / name).write_text(front, encoding="utf-8")
    timeline = _generated(tmp_path / "mkdocs.yml")["adr/timeline.md"]
    assert timeline.index("## 2026-01-02") < timeline.index("## 2026-02-10"), timeline
    assert "```mermaid\ntimeline" in timeline
    first = next(line for line in timeline.splitlines() if "[0001](0001-first.md)" in line)
    assert "The first decision" in first and "*superseded*" in first, first
    assert "superseded by [0003](0003-third.md)" in first, first
    third = next(line for line in timeline.splitlines() if line.startswith("- [0003]"))
    assert "*accepted*" in third and "supersedes [0001](0001-first.md)" in third, third
