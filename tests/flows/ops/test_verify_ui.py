"""``aiop verify`` notices a server whose UI calls another port's API (a blank UI)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import free_port, start, stop, wait_http

ROOT = Path(__file__).resolve().parents[3]
PREFECT = str(Path(sys.executable).with_name("prefect"))

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra}


@pytest.fixture(scope="module")
def server_without_ui_api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``prefect server start --port P`` as the README once said: no PREFECT_SERVER_UI_API_URL."""
    base = tmp_path_factory.mktemp("verify-ui")
    port = free_port()
    log = base / "server.log"
    args = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = start(args, _env(PREFECT_HOME=str(base / "home")), log)
    try:
        api = f"http://127.0.0.1:{port}/api"
        wait_http(f"{api}/health", proc, log, timeout_s=240)
        yield api
    finally:
        stop(proc)


def _verify(api: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "verify", "--no-docs"],
        cwd=ROOT,
        env=_env(PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path / "client-home")),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_verify_reports_a_ui_that_calls_another_port(
    server_without_ui_api_url: str, tmp_path: Path
) -> None:
    api = server_without_ui_api_url
    done = _verify(api, tmp_path)
    row = next(line for line in done.stdout.splitlines() if line.startswith("Prefect UI"))
    assert " FAIL " in row and "http://127.0.0.1:4200/api" in row and api in row, done.stdout
    assert f"PREFECT_SERVER_UI_API_URL={api}" in done.stdout, done.stdout
    assert done.returncode == 0, (
        done.stdout + done.stderr
    )  # runs still work: reported, not required
