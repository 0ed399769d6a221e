"""Fixtures of the browser tests: the built docs site and its server, a Prefect server, Chromium,
screenshots.

Screenshots are kept as test artifacts in ``test-artifacts/screenshots/<module>/`` at the root of
the checkout (git-ignored), or under ``AIOP_TEST_ARTIFACTS`` when set; the folder is named at the
end of the test output. A failing test also leaves a screenshot of each page it had open
(``FAILED-<test>-<n>.png``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser._support import (
    CHROMIUM_ARGS,
    PREFECT,
    PYTHON,
    ROOT,
    Offline,
    PrefectServer,
    clean_env,
    require_chromium,
    screenshot_root,
)
from tests.processes import free_port, start, stop, wait_http

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="session")
def docs_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs built once with ``mkdocs build --strict`` into a temporary folder."""
    out = tmp_path_factory.mktemp("browser-site")
    done = subprocess.run(
        [PYTHON, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


@pytest.fixture(scope="module")
def docs_server(docs_site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The built site served by ``python -m http.server`` on a free port; yields its base URL."""
    require_chromium()  # only browsers read it: skip before starting anything
    port = free_port()
    log = tmp_path_factory.mktemp("docs-server") / "http.log"
    args = [PYTHON, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(docs_site)]
    proc = start([*args, str(port)], clean_env(), log)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url, proc, log, timeout_s=30)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """``prefect server start`` on a free port, one per module so that each module's runs and
    artifacts are its own (started after Chromium was found: no server for a skip)."""
    require_chromium()
    base = tmp_path_factory.mktemp("prefect-ui")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = base / "server.log"
    proc = start(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        clean_env(
            PREFECT_HOME=str(base / "server-home"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_API_URL=api,
            PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
        ),
        log,
    )
    try:
        wait_http(f"{api}/health", proc, log, timeout_s=180)
        yield PrefectServer(api=api, ui=f"http://127.0.0.1:{port}/v2", base=base)
    finally:
        stop(proc)


_SHOT_FOLDERS: list[Path] = []


@pytest.fixture(scope="module")
def screenshots(request: pytest.FixtureRequest) -> Path:
    """Where this module's screenshots are kept (``test-artifacts/screenshots/<module>``)."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    folder = screenshot_root() / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):  # the folder shows this run only
        old.unlink()
    _SHOT_FOLDERS.append(folder)
    return folder


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Name the folders the screenshots of this session were kept in, at the end of the output."""
    for folder in _SHOT_FOLDERS:
        shots = len(list(folder.glob("*.png")))
        terminalreporter.write_line(f"screenshots kept as test artifacts: {folder} ({shots} files)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium driven by Playwright's sync API (one per module)."""
    executable = require_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a busy 2-core CI machine renders slowly
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


@pytest.fixture
def offline(
    browser: Browser, screenshots: Path, request: pytest.FixtureRequest
) -> Iterator[Offline]:
    """A fresh offline context per test; when the test fails, each open page is screenshotted."""
    ctx = Offline(browser)
    try:
        yield ctx
    finally:
        if request.node.stash.get(_FAILED, False):
            for number, page in enumerate(ctx.context.pages):
                path = screenshots / f"FAILED-{request.node.name}-{number}.png"
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(path), full_page=True)
                    print(f"screenshot of the failure: {path} ({page.url})")
        ctx.context.close()
