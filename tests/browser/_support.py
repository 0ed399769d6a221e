"""Helpers of the browser tests: finding Chromium, processes on free ports, an offline browser.

The browser tests drive the Debian Chromium (``/usr/bin/chromium``, or ``AIOP_CHROMIUM``) with the
``playwright`` package; ``playwright install`` is never needed. Without either they skip with the
reason, unless ``AIOP_REQUIRE_SERVICES=1`` (CI), where they fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from tests.services import REQUIRE_SERVICES_ENV, services_required

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, FloatRect, Locator

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

#: Overrides the Chromium binary (default: the Debian package's ``/usr/bin/chromium``).
CHROMIUM_ENV = "AIOP_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
#: Where screenshots are kept (default: ``test-artifacts/`` at the root of the checkout, git-ignored).
ARTIFACTS_ENV = "AIOP_TEST_ARTIFACTS"
PREFECT = str(Path(PYTHON).with_name("prefect"))

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

#: Material renders mermaid into a *closed* shadow root, which no selector can reach; opening it
#: (in the test browser only) lets the tests check that the diagram really became an SVG.
OPEN_SHADOW_ROOTS = """
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (init) {
  return attach.call(this, { ...init, mode: "open" });
};
"""


@dataclass(frozen=True)
class PrefectServer:
    """A running ``prefect server start`` of the tests."""

    api: str  # http://127.0.0.1:<port>/api
    ui: str  # the UI v2: http://127.0.0.1:<port>/v2
    base: Path  # logs, Prefect homes, pipeline outputs


def screenshot_root() -> Path:
    """Where screenshots are kept: ``$AIOP_TEST_ARTIFACTS/screenshots`` or ``test-artifacts/screenshots``."""
    return Path(os.environ.get(ARTIFACTS_ENV) or ROOT / "test-artifacts") / "screenshots"


def settled_box(element: Locator) -> FloatRect | None:
    """The element's box once the page has settled, None if it never gets one (within 5 s).

    The V2 UI can swap a rendered diagram for a fresh copy (a re-render after the artifact's data
    refreshes): a locator that was visible a moment ago then has no box until the new one is in
    place.
    """
    for _ in range(50):
        box = element.bounding_box()
        if box is not None:
            return box
        element.page.wait_for_timeout(100)
    return None


def settled_screenshot(element: Locator, path: Path) -> None:
    """A screenshot of the element, taken again when the page swapped it while it was taken
    (the re-render :func:`settled_box` describes), up to 20 times."""
    from playwright.sync_api import Error

    for attempt in range(20):
        try:
            element.screenshot(path=str(path))
            return
        except Error as exc:
            swapped = "not attached" in str(exc) or "not stable" in str(exc)
            if not swapped or attempt == 19:
                raise
            element.page.wait_for_timeout(250)


def _missing(what: str, how: str) -> NoReturn:
    message = f"{what}; {how}"
    if services_required():
        pytest.fail(f"{message}. {REQUIRE_SERVICES_ENV}=1 makes this a failure.", pytrace=False)
    pytest.skip(f"{message}; set {REQUIRE_SERVICES_ENV}=1 to fail instead of skipping.")


def require_chromium() -> str:
    """The Chromium binary to drive; skips (or fails, in CI) when it or ``playwright`` is missing."""
    if importlib.util.find_spec("playwright") is None:
        _missing(
            "the playwright package is not installed",
            "install it with `pip install -e '.[dev]'` (never `playwright install`)",
        )
    path = os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
    found = shutil.which(path)
    if found is None:
        _missing(
            f"no Chromium at {path}",
            f"install it with `apt-get install -y chromium` or point {CHROMIUM_ENV} at a binary",
        )
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Prefect or fault-injection settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "AIOP_CHAOS", "AIOP_BREAKER_", "AIOP_RETRY_"))
        and k not in ("AIOP_BACKEND", "AIOP_ENGINE_LIMIT", "AIOP_DOCS_URL")
    }
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


class Offline:
    """A browser context that only reaches 127.0.0.1 and records what else a page asked for."""

    def __init__(self, browser: Browser) -> None:
        self.blocked: list[str] = []
        self.context: BrowserContext = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.set_default_timeout(60_000)
        self.context.add_init_script(OPEN_SHADOW_ROOTS)
        self.context.route("**/*", self._route)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()
