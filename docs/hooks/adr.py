"""MkDocs hook: publish the top-level ``adr/*.md`` as ``adr/<name>.md`` pages, plus an index and a timeline.

The index (number, title, status, date) and the timeline (date order, with supersedes links) are
generated from each ADR's front matter: ``status``, ``date`` and an optional ``supersedes: [N, ...]``.
Files not named ``NNNN-*.md`` (``template.md``) are published but listed in neither.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.livereload import LiveReloadServer
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.utils.meta import get_data

INDEX_HEAD = """# Architecture decisions

Sources live in the repository's `adr/` folder; new ones start from the [template](template.md).
See also the [timeline](timeline.md).

| ADR | Title | Status | Date | Supersedes / superseded by |
| --- | --- | --- | --- | --- |"""


def _folder(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).parent / "adr"


def _record(path: Path) -> dict[str, Any]:
    body, meta = get_data(path.read_text(encoding="utf-8"))
    heading = re.search(r"^# +(.+)$", body, re.MULTILINE)
    # Headings read "# 0001. Title": the number is shown once, as the link.
    title = re.sub(r"^\d{4}\.?\s*", "", heading[1]).strip() if heading else path.stem
    sup = meta.get("supersedes") or []
    return {
        "number": path.name[:4],
        "link": f"[{path.name[:4]}]({path.name})",
        "title": title,
        "status": str(meta.get("status", "proposed")),
        "date": str(meta.get("date", "undated")),
        "supersedes": [f"{int(n):04d}" for n in (sup if isinstance(sup, list) else [sup])],
    }


def _notes(num: str, records: dict[str, dict[str, Any]]) -> list[str]:
    """Supersedes links, both directions."""
    r = records[num]
    notes = [f"supersedes {records[n]['link']}" for n in r["supersedes"] if n in records]
    notes += [f"superseded by {o['link']}" for o in records.values() if num in o["supersedes"]]
    return notes


def _short(title: str, limit: int = 44) -> str:
    """``title`` without mermaid's separators, cut at a word boundary."""
    text = " ".join(re.sub(r"[:#;`]", " ", title).split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",") + "…"


def _timeline_chart(by_date: dict[str, list[str]], records: dict[str, dict[str, Any]]) -> list[str]:
    """A mermaid timeline: one period per date, the decisions of that day under it."""
    lines = ["```mermaid", "timeline", "    title Decisions by date"]
    for date, nums in by_date.items():
        events = " : ".join(f"{n} {_short(records[n]['title'])}" for n in nums)
        lines.append(f"    {date} : {events}")
    return [*lines, "```"]


def _pages(records: dict[str, dict[str, Any]]) -> tuple[str, str]:
    index = [INDEX_HEAD] + [
        f"| {r['link']} | {r['title']} | {r['status']} | {r['date']} |"
        + (f" {'; '.join(_notes(num, records))} |" if _notes(num, records) else " |")
        for num, r in sorted(records.items())
    ]
    by_date: dict[str, list[str]] = {}
    for num, r in sorted(records.items(), key=lambda item: (item[1]["date"], item[0])):
        by_date.setdefault(r["date"], []).append(num)
    timeline = [
        "# Decision timeline",
        "",
        "Every decision by the day it was taken, with its status and what it replaced. Sources"
        " and the [index](index.md) list the same records.",
        "",
        *_timeline_chart(by_date, records),
        "",
    ]
    for date, nums in by_date.items():
        timeline += [f"## {date}", ""]
        for num in nums:
            r = records[num]
            notes = "".join(f"; {n}" for n in _notes(num, records))
            timeline.append(f"- {r['link']} **{r['title']}** · *{r['status']}*{notes}")
        timeline.append("")
    return "\n".join([*index, ""]), "\n".join(timeline)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    records = {}
    for path in sorted(_folder(config).glob("*.md")):
        src = f"adr/{path.name}"
        files.append(
            File.generated(config, src, abs_src_path=str(path), inclusion=InclusionLevel.NOT_IN_NAV)
        )
        if re.match(r"\d{4}-", path.name):
            records[path.name[:4]] = _record(path)
    index, timeline = _pages(records)
    files.append(File.generated(config, "adr/index.md", content=index))
    files.append(File.generated(config, "adr/timeline.md", content=timeline))
    return files


def on_serve(server: LiveReloadServer, config: MkDocsConfig, builder: Any) -> LiveReloadServer:
    server.watch(str(_folder(config)))
    return server
