"""Helpers of the browser tests: finding Chromium, processes on free ports, an offline browser.

The browser tests drive the Debian Chromium (``/usr/bin/chromium``, or ``AIOP_CHROMIUM``) with the
``playwright`` package; ``playwright install`` is never needed. Without either they skip with the
reason, unless ``AIOP_REQUIRE_SERVICES=1`` (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from tests.services import REQUIRE_SERVICES_ENV, services_required

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

#: Overrides the Chromium binary (default: the Debian package's ``/usr/bin/chromium``).
CHROMIUM_ENV = "AIOP_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
#: Where screenshots are kept (default: a pytest temporary folder).
ARTIFACTS_ENV = "AIOP_TEST_ARTIFACTS"

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


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def start(args: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own process group, output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left after ``grace_s``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def tail(log: Path, chars: int = 4000) -> str:
    """The end of a process log, for failure messages."""
    if not log.exists():
        return f"(no log at {log})"
    return log.read_text(encoding="utf-8", errors="replace")[-chars:]


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Wait until ``url`` answers 200; fail with the process log when it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited with {proc.returncode}:\n{tail(log)}", pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout_s:g} s:\n{tail(log)}", pytrace=False)


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
