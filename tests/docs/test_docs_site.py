"""The documentation site: a strict offline build, no external assets, and the anchors code links to.

One strict build (``mkdocs build --strict`` into a temporary folder, ~5 s, hence ``slow``) is shared
by the module; the tests marked ``slow`` read the HTML it produced.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from adapters.errors import AiopError

ROOT = Path(__file__).resolve().parents[2]

#: Modules that define error classes; imported so the anchor check sees all of them.
_MODULES_WITH_ERRORS = ("adapters.errors", "agents.errors", "flows.data_pipeline.flow")
_EXTERNAL = re.compile(r"^(?:https?:)?//", re.IGNORECASE)


class _Tags(HTMLParser):
    """Collects element ids and the URLs of assets the browser loads by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.assets: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "id" in values:
            self.ids.add(values["id"])
        if tag in ("script", "img", "iframe", "source") and values.get("src"):
            self.assets.append(values["src"])
        if tag == "link" and values.get("href"):
            self.assets.append(values["href"])
        if tag == "a" and values.get("href"):
            self.links.append(values["href"])


def _parse(page: Path) -> _Tags:
    parser = _Tags()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _subclasses(cls: type[AiopError]) -> Iterator[type[AiopError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert not warnings, "\n".join(warnings)
    return out


@pytest.mark.slow
class TestBuild:
    def test_strict_build_produces_every_page_of_the_nav(self, site: Path) -> None:
        for page in (
            "index.html",
            "tutorial/first-pipeline/index.html",
            "guides/data-pipeline/index.html",
            "troubleshooting/index.html",
            "reference/api/index.html",
            "adr/index.html",
            "adr/timeline/index.html",
            "journal/index.html",
        ):
            assert (site / page).is_file(), page

    def test_no_page_loads_an_asset_from_another_host(self, site: Path) -> None:
        external = {
            f"{page.relative_to(site)}: {url}"
            for page in site.rglob("*.html")
            for url in _parse(page).assets
            if _EXTERNAL.match(url)
        }
        assert not external, sorted(external)

    def test_mermaid_is_shipped_and_loaded_from_the_site(self, site: Path) -> None:
        bundle = site / "assets" / "javascripts" / "mermaid.min.js"
        assert 100_000 < bundle.stat().st_size < 5_000_000
        scripts = _parse(site / "explanation" / "architecture" / "index.html").assets
        assert any(s.endswith("assets/javascripts/mermaid.min.js") for s in scripts), scripts

    def test_hooks_are_not_published(self, site: Path) -> None:
        assert not (site / "hooks").exists()


@pytest.mark.slow
class TestAnchorsTheCodeLinksTo:
    def test_every_error_class_has_its_troubleshooting_section(self, site: Path) -> None:
        for module in _MODULES_WITH_ERRORS:  # the same classes whichever tests ran before
            importlib.import_module(module)
        ids = _parse(site / "troubleshooting" / "index.html").ids
        classes: list[type[AiopError]] = [AiopError, *_subclasses(AiopError)]
        ours = [c for c in classes if not c.__module__.startswith("tests")]
        assert len(ours) >= 10
        missing = {c.__name__: c.docs_anchor for c in ours if c.docs_anchor not in ids}
        assert not missing, f"no section with these anchors on the troubleshooting page: {missing}"

    def test_every_docs_page_the_code_names_is_built(self, site: Path) -> None:
        # docs_url('page/') literals, and page paths kept in tables (e.g. a guide per flow).
        pattern = re.compile(
            r"""docs_url\(\s*["']([^"'#]*)"""
            r"""|["']((?:tutorial|guides|reference|explanation|troubleshooting|adr|journal"""
            r"""|contributing)/[\w./-]*)["']"""
        )
        pages = {
            called or tabled
            for folder in ("flows", "adapters", "agents")
            for source in (ROOT / folder).rglob("*.py")
            for called, tabled in pattern.findall(source.read_text(encoding="utf-8"))
        }
        assert pages, "expected the code to link some docs pages"
        missing = [p for p in pages if not (site / p / "index.html").is_file()]
        assert not missing, missing

    def test_every_agent_docs_page_is_built(self, site: Path) -> None:
        pattern = re.compile(r"^docs:\s*[\"']?([^\"'#\s]+)", re.MULTILINE)
        pages = {
            f"{definition.name}: {page}"
            for definition in (ROOT / "agents" / "definitions").glob("*.y*ml")
            for page in pattern.findall(definition.read_text(encoding="utf-8"))
            if not (site / page / "index.html").is_file()
        }
        assert not pages, sorted(pages)


@pytest.mark.slow
class TestDecisionRecords:
    def test_index_lists_every_numbered_adr_and_links_the_template(self, site: Path) -> None:
        links = set(_parse(site / "adr" / "index.html").links)
        numbered = sorted(p.stem for p in (ROOT / "adr").glob("[0-9][0-9][0-9][0-9]-*.md"))
        assert numbered, "expected ADRs in adr/"
        missing = [stem for stem in numbered if f"{stem}/" not in links]
        assert not missing, missing
        assert "template/" in links
        for stem in [*numbered, "template"]:
            assert (site / "adr" / stem / "index.html").is_file(), stem

    def test_timeline_lists_every_numbered_adr(self, site: Path) -> None:
        text = (site / "adr" / "timeline" / "index.html").read_text(encoding="utf-8")
        for path in (ROOT / "adr").glob("[0-9][0-9][0-9][0-9]-*.md"):
            assert f'href="../{path.stem}/"' in text, path.stem


@pytest.mark.parametrize(
    "path", sorted((ROOT / "adr").glob("[0-9][0-9][0-9][0-9]-*.md")), ids=lambda p: p.stem
)
def test_adr_has_front_matter_and_every_section(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    front = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert front, "front matter (status, date) missing"
    assert re.search(r"^status: \w+", front[1], re.MULTILINE)
    assert re.search(r"^date: \d{4}-\d{2}-\d{2}$", front[1], re.MULTILINE)
    for section in ("Context", "Decision", "Consequences", "Alternatives considered"):
        assert re.search(rf"^## {section}$", text, re.MULTILINE), section
