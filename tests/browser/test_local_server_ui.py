"""The default set-up, in a browser: the local server's UI login, and docs links that land.

One default run (no ``PREFECT_API_URL``, no ``AIOP_DOCS_URL``, a fresh ``PREFECT_HOME``) starts
the local Prefect server with its documentation site beside it; the module stops it at the end.
Chromium then does what a user does: logs in to the UI with the auth string kept in the home,
opens the run page the console printed, opens the run's summary artifact and follows its docs
link, which must land on the rendered guide. A link stored before a page moved lands on the
site's search for it.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.server._state import AUTH_FILE, read_state
from flows.server.local_server import stop
from tests.browser._support import PYTHON, ROOT, Offline
from tests.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def default_run(
    browser: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A default run with nothing configured; yields what it printed and the server's record."""
    base = tmp_path_factory.mktemp("default-setup")
    home = base / "prefect-home"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "AIOP_")) or k == "AIOP_CACHE_DIR"
    }
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_PORT=str(free_port()),
        AIOP_BACKEND="local",
        PYTHONUNBUFFERED="1",
    )
    try:
        done = subprocess.run(
            [PYTHON, "-m", "flows.data_pipeline", "--rows", "500", "--partitions", "1",
             "--output", str(base / "out"), "--work-dir", str(base / "work")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        state = read_state(home)
        assert state is not None and state.get("server_id"), done.stderr[-3000:]
        (link,) = [x.split()[-1] for x in done.stdout.splitlines() if x.startswith("Flow run:")]
        _wait_for_docs(str(state["docs_url"]))
        yield {
            "state": state,
            "link": link,
            "auth": (home / AUTH_FILE).read_text(encoding="utf-8").strip(),
        }
    finally:
        stop(home)


def _wait_for_docs(docs: str) -> None:
    """The site is built in the background when the server starts: wait for it (a guard)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(docs, timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"the docs at {docs} were not served within 180 s")


def test_a_user_logs_in_and_a_docs_link_of_a_stored_artifact_lands_on_the_page(
    default_run: dict[str, Any], offline: Offline, screenshots: Path
) -> None:
    """Before: docs links pointed at http://127.0.0.1:8000, where nothing runs by default."""
    from playwright.sync_api import expect

    state, docs = default_run["state"], default_run["state"]["docs_url"]
    ui = str(state["api_url"]).removesuffix("/api")
    page = offline.context.new_page()
    page.goto(default_run["link"])  # exactly what the console printed
    login = page.get_by_placeholder("admin:pass")
    expect(login).to_be_visible()
    page.screenshot(path=str(screenshots / "login.png"))
    login.fill(default_run["auth"])
    page.get_by_role("button", name="Login").click()

    page.goto(default_run["link"])
    expect(page).to_have_url(re.compile(rf"^{re.escape(ui)}/v2/runs/flow-run/"))
    page.get_by_role("tab", name="Artifacts").click()
    page.locator('a[href*="/artifacts/artifact/"]', has_text="data-pipeline-summary").click()
    page.wait_for_url(f"{ui}/v2/artifacts/artifact/**")
    summary = page.locator(".prose").filter(has=page.locator("table"))
    expect(summary).to_have_count(1)
    link = summary.get_by_role("link", name="the data pipeline guide")
    assert link.get_attribute("href") == f"{docs}guides/data-pipeline/"
    page.screenshot(path=str(screenshots / "summary-with-docs-links.png"), full_page=True)
    if link.get_attribute("target") == "_blank":
        with offline.context.expect_page() as opened:
            link.click()
        guide = opened.value
    else:
        link.click()
        guide = page
    expect(guide).to_have_url(f"{docs}guides/data-pipeline/")
    expect(guide.locator("h1")).to_contain_text("The data pipeline")
    guide.screenshot(path=str(screenshots / "guide-from-the-artifact.png"))


def test_a_link_to_a_page_that_moved_lands_on_the_sites_search(
    default_run: dict[str, Any], offline: Offline, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    docs = default_run["state"]["docs_url"]
    page = offline.context.new_page()
    page.goto(f"{docs}guides/data-pipeline-old-name/#a-section")
    expect(page).to_have_url(re.compile(rf"^{re.escape(docs)}\?q=data%20pipeline%20old%20name"))
    search = page.locator("input.md-search__input")
    expect(search).to_have_value(re.compile("data pipeline"))
    expect(page.locator(".md-search-result__item").first).to_be_visible()
    page.screenshot(path=str(screenshots / "moved-page-search.png"))
