"""The self-healing drill as a user sees it: V2 links only, a final ``Flow run:`` line that opens
the drill's run, and a report whose table reads cleanly in the Prefect UI at 1400 px.

``aiop drill`` runs two scenarios against a real Prefect server; Chromium
follows the printed link, opens the report artifact, and checks that no cell of its table overlaps
another cell or anything else on the page (the V2 sidebar, the artifact's details column).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.browser._support import PYTHON, ROOT, Offline, PrefectServer, clean_env

pytestmark = [pytest.mark.slow, pytest.mark.browser]

#: For each cell of a table: the cells it overlaps, and the texts outside the table it overlaps.
OVERLAPS = """
table => {
  const inter = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  const cells = [...table.querySelectorAll('th, td')];
  const boxes = cells.map(c => c.getBoundingClientRect());
  const crossed = [];
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++)
      if (inter(boxes[i], boxes[j])) crossed.push([cells[i].textContent.trim(), cells[j].textContent.trim()]);
  const covered = [];
  for (const el of document.querySelectorAll('body *')) {
    if (table.contains(el) || el.contains(table)) continue;
    const text = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    const style = getComputedStyle(el);
    if (!text || style.visibility === 'hidden' || style.display === 'none') continue;
    const box = el.getBoundingClientRect();
    if (box.width && box.height && boxes.some(b => inter(b, box))) covered.push(el.textContent.trim().slice(0, 60));
  }
  const box = table.getBoundingClientRect();
  return {crossed, covered, left: box.left, right: box.right, viewport: innerWidth};
}
"""


@pytest.fixture(scope="module")
def drill(prefect_server: PrefectServer) -> subprocess.CompletedProcess[str]:
    """One drill of two scenarios (one of them the SIGKILL one) against the server."""
    out = prefect_server.base / "drill"
    env = clean_env(
        PREFECT_HOME=str(prefect_server.base / "drill-home"),
        PREFECT_API_URL=prefect_server.api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    args = ["--output", str(out), "--rows", "300", "--scenario", "transient exit"]
    args += ["--scenario", "resume after SIGKILL"]
    done = subprocess.run(
        [PYTHON, "-m", "flows.cli", "drill", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_drill_prints_v2_links_and_ends_with_its_flow_run(
    drill: subprocess.CompletedProcess[str], prefect_server: PrefectServer
) -> None:
    console = drill.stdout + drill.stderr
    links = re.findall(r"https?://\S+/runs/flow-run/[0-9a-f-]+", console)
    assert links, console
    v1 = [link for link in links if "/v2/runs/flow-run/" not in link]
    assert not v1, f"V1 links (their charts and reports show as code): {v1}"
    last = drill.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"Flow run: +{re.escape(prefect_server.ui)}/runs/flow-run/[0-9a-f-]+", last
    )


def test_the_report_table_is_legible_under_the_v2_sidebar(
    drill: subprocess.CompletedProcess[str],
    prefect_server: PrefectServer,
    offline: Offline,
    screenshots: Path,
) -> None:
    from playwright.sync_api import expect

    link = drill.stdout.strip().splitlines()[-1].split()[-1]
    page = offline.context.new_page()  # 1400 x 1000
    page.goto(link)
    expect(page.get_by_text("self-healing-drill").first).to_be_visible()
    page.get_by_role("tab", name="Artifacts").click()
    page.locator('a[href*="/artifacts/artifact/"]', has_text="self-healing-drill").click()
    page.wait_for_url(f"{prefect_server.ui}/artifacts/artifact/**")
    report = page.locator(".prose").filter(has=page.locator("table"))
    expect(report).to_contain_text("2 of 2 scenarios passed")
    table = report.locator("table")
    expect(table).to_contain_text("resume after SIGKILL")
    path = screenshots / "drill-report.png"
    page.screenshot(path=str(path), full_page=True)
    found = table.evaluate(OVERLAPS)
    assert not found["crossed"], f"cells overlap each other: {found['crossed']}"
    assert not found["covered"], f"the table runs under other texts: {found['covered']}"
    assert found["left"] >= 0 and found["right"] <= found["viewport"], found
    expect(report).to_contain_text("its run now Crashed")  # the SIGKILL scenario cleaned up
