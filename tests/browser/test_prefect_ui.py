"""The Prefect UI shows what the pipeline publishes: a real server, two real runs, a real browser.

One ``prefect server start`` (SQLite in a temporary Prefect home) and two runs of
``python -m flows.data_pipeline`` are shared by the module, with the built docs served by
``python -m http.server`` as ``AIOP_DOCS_URL``. Chromium then opens the pages a user would.

The UI v2 (Prefect 3.9's default) lives under ``/v2``: ``/v2/runs/flow-run/<id>``,
``/v2/artifacts/key/<key>``, ``/v2/artifacts/artifact/<id>``, ``/v2/deployments/deployment/<id>``;
the same paths without ``/v2`` open the V1 UI. The server is started with ``PREFECT_UI_API_URL``
because the UI otherwise calls the API on the default port 4200, not the one given by ``--port``.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser._legibility import Chart, measure
from tests.browser._support import PYTHON, ROOT, Offline, clean_env, settled_box, settled_screenshot
from tests.browser._support import PrefectServer as Server

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@dataclass(frozen=True)
class Run:
    """One finished pipeline run, with the link the console printed for it."""

    id: str
    name: str
    link: str


@pytest.fixture(scope="module")
def server(prefect_server: Server) -> Server:
    """The browser tests' Prefect server (conftest)."""
    return prefect_server


def _run_pipeline(server: Server, docs: str, number: int) -> Run:
    work = server.base / f"run{number}"
    env = clean_env(
        PREFECT_HOME=str(work / "home"),  # its own result storage: no cache hit from the other run
        PREFECT_API_URL=server.api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        AIOP_DOCS_URL=docs,
    )
    args = ["--rows", "3000", "--partitions", "2", "--output", str(work / "out")]
    args += ["--work-dir", str(work / "work"), "--backend", "local"]
    done = subprocess.run(
        [PYTHON, "-m", "flows.data_pipeline", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"pipeline run {number} failed:\n{done.stdout}\n{done.stderr}"
    run_id = json.loads((work / "out" / "summary.json").read_text(encoding="utf-8"))["flow_run_id"]
    with urllib.request.urlopen(f"{server.api}/flow_runs/{run_id}", timeout=10) as response:
        name = json.load(response)["name"]
    (printed,) = [x for x in done.stdout.splitlines() if x.startswith("Flow run:")]
    return Run(id=run_id, name=name, link=printed.split()[-1])


@pytest.fixture(scope="module")
def runs(server: Server, docs_server: str) -> list[Run]:
    """Two runs of the main job against the server, oldest first."""
    return [_run_pipeline(server, docs_server, n) for n in (1, 2)]


@pytest.fixture(scope="module")
def deployment_id(server: Server, docs_server: str) -> str:
    """The data-pipeline deployment of ``flows.ops.serve`` registered on the server (not served)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.ops.serve import deployments

    with pytest.MonkeyPatch.context() as env:
        env.setenv("PREFECT_API_URL", server.api)
        env.setattr(
            "flows.ui.console._docs_base", docs_server
        )  # used when the description is built
        with temporary_settings({PREFECT_API_URL: server.api}):
            (deployment,) = deployments()
            # _sync: under pytest-asyncio, Prefect's async_dispatch sees an event loop and
            # apply() would hand back an un-awaited coroutine instead of registering anything.
            return str(deployment.apply(_sync=True))


def _shot(page: Page, folder: Path, name: str, *, full_page: bool = False) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")


def _open_artifact_of_run(page: Page, server: Server, run: Run, key: str) -> Locator:
    """Open the run's page, its Artifacts tab, then the artifact; returns the rendered markdown."""
    from playwright.sync_api import expect

    page.goto(run.link)  # exactly what the console printed
    expect(page).to_have_url(re.compile(rf"^{re.escape(server.ui)}/runs/flow-run/{run.id}"))
    expect(page.get_by_text(run.name).first).to_be_visible()
    page.get_by_role("tab", name="Artifacts").click()
    page.locator('a[href*="/artifacts/artifact/"]', has_text=key).click()
    page.wait_for_url(f"{server.ui}/artifacts/artifact/**")
    markdown = page.locator(".prose").filter(has=page.locator("table"))
    expect(markdown).to_have_count(1)
    return markdown


def _expect_chart(
    markdown: Locator, kind: str, count: int = 1, *, shots: Path | None = None, name: str = ""
) -> list[Chart]:
    """``count`` mermaid diagrams of ``kind`` (gantt, xychart), each drawn; returns their measures.

    With ``shots``, each chart is screenshotted as ``<name>-<kind>-<n>.png`` there.
    """
    from playwright.sync_api import expect

    charts = markdown.locator(f'svg[aria-roledescription="{kind}"]')
    expect(charts).to_have_count(count)
    measured = []
    for index in range(count):
        chart = charts.nth(index)
        expect(chart).to_be_visible()
        box = settled_box(chart)
        assert box is not None and box["width"] > 200 and box["height"] > 50, (kind, box)
        assert chart.locator("rect").count() > 1, f"the {kind} chart draws no bars"
        measured.append(measure(chart))
        if shots is not None:
            _shot_element(chart, shots, f"{name}-{kind}-{index}")
    return measured


def _shot_element(element: Locator, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    settled_screenshot(element, path)
    print(f"screenshot: {path}")


def _assert_legible(chart: Chart, *, min_font_px: float) -> None:
    """Every text readable (size, WCAG contrast 4.5) and every bar distinct from its background."""
    bad = chart.illegible(min_font_px=min_font_px)
    assert not bad, f"illegible texts in the {chart.kind} chart: {bad}"
    assert chart.bar_contrasts, f"no bars measured in the {chart.kind} chart"
    faint = [c for c in chart.bar_contrasts if c < 3.0]
    assert not faint, f"{chart.kind} bars barely differ from their background: {faint}"


def _value_axis_minimum(chart: Chart) -> float:
    numbers = []
    for t in chart.texts:
        try:
            numbers.append(float(t.text.replace(",", "")))
        except ValueError:
            continue
    assert numbers, chart.texts
    return min(numbers)


def test_run_summary_renders_a_table_charts_and_docs_links(
    server: Server, runs: list[Run], docs_server: str, offline: Offline, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    page = offline.context.new_page()
    summary = _open_artifact_of_run(page, server, runs[0], "data-pipeline-summary")
    row = summary.locator("table tr", has_text="transform-0")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Completed")
    (timeline,) = _expect_chart(summary, "gantt", shots=screenshots, name="run-summary")
    bars = _expect_chart(summary, "xychart", count=2, shots=screenshots, name="run-summary")
    _shot(page, screenshots, "run-summary", full_page=True)
    # Legible at the UI's default width: the timeline is tall enough for its six steps, its
    # title, step labels and axis are readable on the dark code block they are drawn on.
    assert timeline.height >= 6 * 30, timeline
    _assert_legible(timeline, min_font_px=10)  # axis ticks are 10 px
    labels = [
        t for t in timeline.texts if "(Completed)" in t.text or t.text.startswith("Step timeline")
    ]
    assert len(labels) == 7 and min(t.font_px for t in labels) >= 13, labels
    for chart in bars:  # step durations and rows per second
        _assert_legible(chart, min_font_px=12)
        assert _value_axis_minimum(chart) == 0, chart.texts

    # A user on the V1 UI (Prefect's own links) gets the same artifact with the table first and
    # the charts as their source below it.
    v1 = offline.context.new_page()
    v1.goto(page.url.replace("/v2/artifacts/", "/artifacts/", 1).split("?", 1)[0])
    table = v1.locator("table", has_text="transform-0")
    expect(table.first).to_be_visible()
    code = v1.get_by_text("gantt", exact=False).first
    expect(code).to_be_visible()
    table_box, code_box = table.first.bounding_box(), code.bounding_box()
    assert table_box and code_box and table_box["y"] < code_box["y"], (table_box, code_box)
    _shot(v1, screenshots, "run-summary-v1", full_page=True)

    for page_path in ("guides/data-pipeline/", "troubleshooting/", "explanation/self-healing/"):
        expect(summary.locator(f'a[href="{docs_server}{page_path}"]')).to_have_count(1)
    # Following the link lands on the guide, served from the built site.
    link = summary.get_by_role("link", name="the data pipeline guide")
    if link.get_attribute("target") == "_blank":
        with offline.context.expect_page() as opened:
            link.click()
        guide = opened.value
    else:
        link.click()
        guide = page
    expect(guide).to_have_url(f"{docs_server}guides/data-pipeline/")
    expect(guide.locator("h1")).to_contain_text("The data pipeline")


def test_history_shows_a_table_of_both_runs(
    server: Server, runs: list[Run], offline: Offline, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    page = offline.context.new_page()
    page.goto(f"{server.ui}/artifacts/key/data-pipeline-history")
    versions = page.locator('a[href*="/artifacts/artifact/"]')
    expect(versions).to_have_count(2)  # one version per run under the one key
    _shot(page, screenshots, "history-versions")

    history = _open_artifact_of_run(page, server, runs[1], "data-pipeline-history")
    for run in runs:
        row = history.locator("table tbody tr", has_text=run.name)
        expect(row).to_have_count(1)
        expect(row).to_contain_text("3000")  # input_rows, from the run's metrics artifact
    (chart,) = _expect_chart(history, "xychart", shots=screenshots, name="history")
    _shot(page, screenshots, "history", full_page=True)
    _assert_legible(chart, min_font_px=12)
    assert _value_axis_minimum(chart) == 0, chart.texts  # durations measured from 0
    assert {run.name for run in runs} <= {t.text for t in chart.texts}  # bars named by run
    # The chart's order is the one its title and the table say: the newest run at the top.
    svg = history.locator('svg[aria-roledescription="xychart"]')
    title = svg.locator("text", has_text="newest at the top")
    expect(title).to_have_count(1)
    newest, oldest = (svg.locator("text", has_text=run.name).bounding_box() for run in runs[::-1])
    assert newest and oldest and newest["y"] < oldest["y"], (newest, oldest)
    rows = history.locator("table tbody tr").all_inner_texts()
    assert runs[1].name in rows[0] and runs[0].name in rows[1], rows  # the table: newest first


def test_deployment_description_links_into_the_docs(
    server: Server, deployment_id: str, docs_server: str, offline: Offline, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    page = offline.context.new_page()
    page.goto(f"{server.ui}/deployments/deployment/{deployment_id}")
    page.get_by_role("tab", name="Description").click()
    description = page.locator(".prose").filter(has=page.locator('a[href*="troubleshooting/"]'))
    expect(description).to_have_count(1)
    expect(description).to_contain_text("Parameters")
    for selector in ('a[href*="guides/data-pipeline/"]', 'a[href*="troubleshooting/"]'):
        link = description.locator(selector)
        expect(link).to_have_count(1)
        assert (link.get_attribute("href") or "").startswith(docs_server), selector
    search = description.locator('a[href*="?q="]')
    expect(search).to_have_attribute("href", f"{docs_server}?q=data+pipeline")
    _shot(page, screenshots, "deployment-description")

    # The search link opens the docs with the search already run.
    if search.get_attribute("target") == "_blank":
        with offline.context.expect_page() as opened:
            search.click()
        docs = opened.value
    else:
        search.click()
        docs = page
    expect(docs.locator(".md-search-result__item").first).to_be_visible()
    _shot(docs, screenshots, "deployment-search-link")
