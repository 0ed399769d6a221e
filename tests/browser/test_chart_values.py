"""Every chart the platform draws renders in the Prefect UI at any size, in the real Chromium.

The charts a pipeline run publishes (the step timeline, step durations and rows per second in
the run summary; run durations in the history) are rendered by the Prefect UI's own mermaid on its
V2 pages. Mermaid rejects a number written with an exponent (``1e+07``) with "Syntax error in
text" and draws an error image instead of the chart, so each chart is drawn here for values from
0 to 10^12, and for two real runs of the main job: one of a single row, one whose every row is
quarantined. Each chart is kept as a screenshot (the folder is named at the end of the test output).
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from adapters import StepResult
from flows.runtime.step_task import StepOutcome
from flows.ui.artifacts import render_summary
from flows.ui.history import RunRecord, render_history
from tests.browser._support import (
    PYTHON,
    ROOT,
    Offline,
    PrefectServer,
    clean_env,
    settled_box,
    settled_screenshot,
)

if TYPE_CHECKING:
    from playwright.sync_api import Locator

pytestmark = [pytest.mark.slow, pytest.mark.browser]

_PLAIN = re.compile(r"^\d+(\.\d+)?$")
_STEPS = ("ingest", "validate", "transform-0", "aggregate", "report")


def _outcome(name: str, start: float, duration: float) -> StepOutcome:
    result = StepResult(
        step=name, exit_code=0, stdout="", stderr="", duration_s=duration, backend="local"
    )
    return StepOutcome(name, "Completed", 1, duration, result=result, started_at=start)


def _markdown(rows: int, step_seconds: tuple[float, ...], run_seconds: tuple[float, ...]) -> str:
    """A run summary (timeline, durations, rows per second) and a history, as a run publishes."""
    outcomes, start = [], 0.0
    for name, seconds in zip(_STEPS, step_seconds, strict=True):
        outcomes.append(_outcome(name, start, seconds))
        start += seconds
    summary = {"input_rows": rows, "valid_rows": rows, "quarantined_rows": 0, "backend": "local"}
    records = [
        RunRecord(f"run-{i}", "Completed", "", s, rows, rows, 0, 0, "local")
        for i, s in enumerate(run_seconds)
    ]
    return render_summary(summary, outcomes, "scale") + "\n" + render_history(records)


#: (name, rows, step durations (s), run durations (s)): rows per second from 0 to 4 x 10^12,
#: the README's million rows (an axis of 10^7, once written "1e+07"), durations up to 10^12 s.
CASES = [
    ("zero", 0, (0.25, 1.0, 0.5, 0.5, 0.25), (0.0, 0.0)),
    ("one-row", 1, (0.25, 1.0, 0.5, 0.5, 0.25), (0.004, 1.5)),
    ("million-rows", 1_000_000, (0.14, 0.9, 0.5, 0.35, 0.2), (12.0, 9.5)),
    ("ten-million-rows", 10_000_000, (1.2, 4.0, 2.5, 1.5, 0.5), (10.0**7, 5.0)),
    ("trillion-rows", 10**12, (0.25, 1.0, 0.5, 0.5, 0.25), (10.0**12, 1.0)),
    ("long-steps", 10**12, (0.001, 3600.0, 86_400.0, 10.0**6, 10.0**9), (10.0**12, 0.004)),
]


def _api(server: PrefectServer, path: str, body: object) -> Any:
    """POST ``body`` to the server's REST API (Playwright's sync API holds this thread's loop)."""
    request = urllib.request.Request(
        f"{server.api}/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _publish(server: PrefectServer, markdown: str, key: str) -> str:
    """Create a markdown artifact on the server; returns its V2 page."""
    made = _api(server, "artifacts/", {"key": key, "type": "markdown", "data": markdown})
    return f"{server.ui}/artifacts/artifact/{made['id']}"


def _charts_drawn(
    page_markdown: Locator, gantts: int, xycharts: int, shots: Path, name: str
) -> None:
    """The artifact shows exactly these charts, each drawn, none an error; each screenshotted."""
    from playwright.sync_api import expect

    expect(page_markdown.locator('svg[aria-roledescription="gantt"]')).to_have_count(gantts)
    expect(page_markdown.locator('svg[aria-roledescription="xychart"]')).to_have_count(xycharts)
    errors = page_markdown.page.locator('svg[aria-roledescription="error"]')
    assert errors.count() == 0, f"{name}: mermaid drew {errors.count()} error image(s)"
    assert "Syntax error" not in page_markdown.page.content(), name
    charts = page_markdown.locator(
        'svg[aria-roledescription="gantt"], svg[aria-roledescription="xychart"]'
    )
    for index in range(charts.count()):
        chart = charts.nth(index)
        expect(chart).to_be_visible()
        box = settled_box(chart)
        assert box is not None and box["width"] > 200 and box["height"] > 50, (name, index, box)
        texts = [t.strip() for t in chart.locator("text").all_text_contents() if t.strip()]
        exponents = [t for t in texts if re.search(r"\de[+-]?\d", t)]
        assert not exponents, f"{name}, chart {index}: {exponents}"
        path = shots / f"{name}-{index}.png"
        settled_screenshot(chart, path)


def _open_markdown(offline: Offline, url: str) -> Locator:
    from playwright.sync_api import expect

    page = offline.context.new_page()
    page.goto(url)
    markdown = page.locator(".prose").filter(has=page.locator("table"))
    expect(markdown).to_have_count(1)
    return markdown


@pytest.mark.parametrize(
    ("name", "rows", "step_seconds", "run_seconds"), CASES, ids=[c[0] for c in CASES]
)
def test_every_chart_renders_at_every_scale(
    prefect_server: PrefectServer,
    offline: Offline,
    screenshots: Path,
    name: str,
    rows: int,
    step_seconds: tuple[float, ...],
    run_seconds: tuple[float, ...],
) -> None:
    markdown = _markdown(rows, step_seconds, run_seconds)
    url = _publish(prefect_server, markdown, f"scale-{name}")
    drawn = _open_markdown(offline, url)
    # The summary's timeline, durations and rows per second, and the history's run durations.
    _charts_drawn(drawn, gantts=1, xycharts=3, shots=screenshots, name=name)
    rates = drawn.locator('svg[aria-roledescription="xychart"]').nth(1)
    top = max(rows / s for s in step_seconds)
    axis = [t for t in rates.locator("text").all_text_contents() if _PLAIN.match(t.strip())]
    assert axis and float(max(axis, key=float)) >= top, (name, axis, top)


def _run(server: PrefectServer, name: str, csv: str) -> str:
    """Run the main job on ``csv`` against the server; returns the run's id."""
    work = server.base / name
    work.mkdir(parents=True)
    (work / "input.csv").write_text(csv, encoding="utf-8")
    env = clean_env(
        PREFECT_HOME=str(work / "home"),
        PREFECT_API_URL=server.api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    args = ["--input", str(work / "input.csv"), "--group-by", "category", "--partitions", "2"]
    args += ["--output", str(work / "out"), "--work-dir", str(work / "work"), "--backend", "local"]
    done = subprocess.run(
        [PYTHON, "-m", "flows.data_pipeline", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return str(json.loads((work / "out" / "summary.json").read_text("utf-8"))["flow_run_id"])


def _artifact_page(server: PrefectServer, run_id: str, key: str) -> str:
    query = {"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [run_id]}}}
    (artifact,) = _api(server, "artifacts/filter", query)
    return f"{server.ui}/artifacts/artifact/{artifact['id']}"


@pytest.mark.parametrize(
    ("name", "csv", "valid"),
    [
        ("one-row-run", "id,category,amount\n1,books,12.50\n", 1),
        ("all-quarantined-run", "id,category,amount\n1,books\n2,toys,3,extra\n3\n", 0),
    ],
    ids=["one-row", "all-quarantined"],
)
def test_the_charts_of_a_real_run_render(
    prefect_server: PrefectServer,
    offline: Offline,
    screenshots: Path,
    name: str,
    csv: str,
    valid: int,
) -> None:
    from playwright.sync_api import expect

    run_id = _run(prefect_server, name, csv)
    summary = _open_markdown(
        offline, _artifact_page(prefect_server, run_id, "data-pipeline-summary")
    )
    expect(summary).to_contain_text(f"{valid} valid")
    _charts_drawn(summary, gantts=1, xycharts=2, shots=screenshots, name=f"{name}-summary")
    history = _open_markdown(
        offline, _artifact_page(prefect_server, run_id, "data-pipeline-history")
    )
    _charts_drawn(history, gantts=0, xycharts=1, shots=screenshots, name=f"{name}-history")
