"""The built docs site in a real browser, offline: search from the URL, mermaid, anchors.

The site is built once (``mkdocs build --strict``) and served by ``python -m http.server``; the
browser may only reach 127.0.0.1, and every test checks that the page asked for nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser._support import Offline

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _shot(offline: Offline, folder: Path, name: str, *, full_page: bool = False) -> None:
    path = folder / f"{name}.png"
    offline.context.pages[-1].screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")


def test_search_opens_from_the_url_with_results(
    docs_server: str, offline: Offline, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    page = offline.context.new_page()
    page.goto(f"{docs_server}?q=breaker")
    expect(page.locator("input.md-search__input")).to_have_value("breaker")
    results = page.locator(".md-search-result__item")
    expect(results.first).to_be_visible()
    expect(page.locator(".md-search-result__meta")).to_contain_text("matching document")
    _shot(offline, screenshots, "search-breaker")
    assert results.count() >= 1
    assert not offline.blocked, offline.blocked


def test_architecture_diagrams_are_drawn_from_the_shipped_mermaid(
    docs_server: str, offline: Offline, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    page = offline.context.new_page()
    page.goto(f"{docs_server}explanation/architecture/")
    drawn = page.locator("div.mermaid svg")  # inside the (test-opened) shadow root
    expect(drawn.first).to_be_visible()
    box = drawn.first.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 50, box
    # Every diagram of the page, not just the first, became an SVG with content.
    sizes = page.locator("div.mermaid").evaluate_all(
        "divs => divs.map(d => d.shadowRoot?.querySelector('svg')?.querySelectorAll('g').length ?? 0)"
    )
    assert len(sizes) >= 3 and all(n > 0 for n in sizes), sizes
    _shot(offline, screenshots, "architecture", full_page=True)
    assert not offline.blocked, f"the page fetched from other hosts: {offline.blocked}"


#: Each label of a drawn mermaid diagram: its text and its font size in CSS pixels as drawn (the
#: diagram is scaled down to the content column when it is wider).
LABEL_SIZES = """
svg => {
  const box = svg.getBoundingClientRect();
  const scale = box.width / (svg.viewBox.baseVal && svg.viewBox.baseVal.width || box.width);
  return [...svg.querySelectorAll('.nodeLabel, .edgeLabel, .cluster-label, text')]
    .filter(e => e.textContent.trim())
    .map(e => [e.textContent.trim().slice(0, 40), parseFloat(getComputedStyle(e).fontSize) * scale]);
}
"""


def test_architecture_diagrams_are_legible_at_1400_px(
    docs_server: str, offline: Offline, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    page = offline.context.new_page()  # 1400 px wide
    page.goto(f"{docs_server}explanation/architecture/")
    drawn = page.locator("div.mermaid svg")
    expect(drawn.first).to_be_visible()
    small = {}
    for index in range(drawn.count()):
        diagram = drawn.nth(index)
        diagram.screenshot(path=str(screenshots / f"architecture-diagram-{index}.png"))
        labels = diagram.evaluate(LABEL_SIZES)
        assert labels, f"diagram {index} has no labels"
        tiny = [(text, round(px, 1)) for text, px in labels if px < 11]
        if tiny:
            small[index] = tiny
    assert not small, f"labels under 11 px (diagram: labels): {small}"


def test_troubleshooting_anchor_exists_and_is_scrolled_to(
    docs_server: str, offline: Offline, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    page = offline.context.new_page()
    page.goto(f"{docs_server}troubleshooting/#step-failed")
    section = page.locator("#step-failed")
    expect(section).to_have_count(1)
    expect(section).to_contain_text("Step failed")
    expect(section).to_be_in_viewport()
    _shot(offline, screenshots, "troubleshooting-step-failed")
    assert not offline.blocked, offline.blocked


def test_adr_timeline_draws_the_decisions_by_date(
    docs_server: str, offline: Offline, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    page = offline.context.new_page()
    page.goto(f"{docs_server}adr/timeline/")
    expect(page.locator("h1")).to_contain_text("Decision timeline")
    drawn = page.locator("div.mermaid svg")  # inside the (test-opened) shadow root
    expect(drawn.first).to_be_visible()
    box = drawn.first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100, box
    dates = page.locator("h2", has_text="2026-11-")
    assert dates.count() >= 2, dates.all_inner_texts()
    entry = page.locator("li", has_text="One plain-data step contract")
    expect(entry).to_contain_text("accepted")
    assert "0001 0001" not in page.locator("article").inner_text()
    _shot(offline, screenshots, "adr-timeline", full_page=True)
    assert not offline.blocked, offline.blocked
