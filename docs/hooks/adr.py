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

| ADR | Title | Status | Date |
| --- | --- | --- | --- |"""


def _folder(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).parent / "adr"


def _record(path: Path) -> dict[str, Any]:
    body, meta = get_data(path.read_text(encoding="utf-8"))
    title = re.search(r"^# +(.+)$", body, re.MULTILINE)
    sup = meta.get("supersedes") or []
    return {
        "link": f"[{path.name[:4]}]({path.name})",
        "title": title[1] if title else path.stem,
        "status": meta.get("status", "proposed"),
        "date": str(meta.get("date", "undated")),
        "supersedes": [f"{int(n):04d}" for n in (sup if isinstance(sup, list) else [sup])],
    }


def _pages(records: dict[str, dict[str, Any]]) -> tuple[str, str]:
    index = [INDEX_HEAD] + [
        f"| {r['link']} | {r['title']} | {r['status']} | {r['date']} |"
        for _, r in sorted(records.items())
    ]
    timeline = ["# Decision timeline", ""]
    for num, r in sorted(records.items(), key=lambda item: (item[1]["date"], item[0])):
        notes = [f"supersedes {records[n]['link']}" for n in r["supersedes"] if n in records]
        notes += [f"superseded by {o['link']}" for o in records.values() if num in o["supersedes"]]
        line = f"- **{r['date']}** {r['link']} {r['title']}: {r['status']}"
        timeline.append(line + "".join(f"; {n}" for n in notes))
    return "\n".join([*index, ""]), "\n".join([*timeline, ""])


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
