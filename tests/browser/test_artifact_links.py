"""Every docs link the Prefect UI shows resolves on the built site, anchors included (no browser).

tests/docs/test_docs_site.py checks the sources (each error class has its section, each page named
in code is built); this renders what the UI actually receives (the run summary, a failure report
for every error class, the deployment description), takes each ``AIOP_DOCS_URL`` link out of that
markdown and resolves it against the built site: the page file exists and, for ``#anchor`` links,
an element with that id is on the page.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from adapters import StepResult
from adapters.errors import AiopError
from flows.ops.serve import deployment_description
from flows.runtime.step_task import StepOutcome
from flows.ui.artifacts import render_failure, render_summary

DOCS = "http://docs.invalid/"
#: Modules that define error classes; imported so the walk sees all of them.
_MODULES_WITH_ERRORS = ("adapters.errors", "agents.errors", "flows.data_pipeline.flow")
_LINK = re.compile(r"\]\((\S+?)\)")


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(v for k, v in attrs if k == "id" and v)


def _ids(page: Path) -> set[str]:
    parser = _Ids()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.ids


def _error_classes() -> Iterator[type[AiopError]]:
    for module in _MODULES_WITH_ERRORS:
        importlib.import_module(module)
    todo: list[type[AiopError]] = [AiopError]
    while todo:
        cls = todo.pop()
        if not cls.__module__.startswith("tests"):
            yield cls
        todo.extend(cls.__subclasses__())


def _instance(cls: type[AiopError]) -> AiopError:
    """An instance without calling the class's own (keyword-only, varying) constructor."""
    error = cls.__new__(cls)
    Exception.__init__(error, "boom")
    error.message, error.step = "boom", "transform-0"
    return error


def _outcome(name: str, start: float) -> StepOutcome:
    result = StepResult(
        step=name, exit_code=0, stdout="", stderr="", duration_s=1.0, backend="local"
    )
    return StepOutcome(name, "Completed", 1, 1.0, result=result, started_at=start)


def _rendered() -> dict[str, str]:
    """Every markdown text the UI shows, by what it is."""
    from flows.data_pipeline.flow import data_pipeline

    summary = {"input_rows": 3, "valid_rows": 3, "quarantined_rows": 0, "backend": "local"}
    texts = {
        "run summary": render_summary(summary, [_outcome("ingest", 0.0)], "run"),
        "deployment description": deployment_description(data_pipeline.name, data_pipeline.__doc__),
        "failure without an error": render_failure("ingest", None, "run"),
    }
    for cls in _error_classes():
        texts[f"failure {cls.__name__}"] = render_failure("transform-0", _instance(cls), "run")
    return texts


@pytest.mark.slow
def test_every_docs_link_of_the_ui_resolves_on_the_built_site(
    docs_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flows.ui.console._docs_base", DOCS)  # use_docs_url, undone after the test
    texts = _rendered()
    assert len(texts) >= 12, sorted(texts)  # summary, description, unknown + >= 9 error classes
    checked: set[str] = set()
    broken: list[str] = []
    for what, text in texts.items():
        links = [u for u in _LINK.findall(text) if u.startswith(DOCS)]
        assert links, f"the {what} has no docs link:\n{text}"
        for url in links:
            parts = urlsplit(url)
            page = docs_site / parts.path.lstrip("/") / "index.html"
            if not page.is_file():
                broken.append(f"{what}: {url} (no {page.relative_to(docs_site)})")
            elif parts.fragment and parts.fragment not in _ids(page):
                broken.append(f"{what}: {url} (no id {parts.fragment!r} on the page)")
            checked.add(url)
    assert not broken, "\n".join(broken)
    # Sanity: the walk reached the anchored and the search links, not just the page links.
    assert any("#step-failed" in u for u in checked), sorted(checked)
    assert any("?q=" in u for u in checked), sorted(checked)
