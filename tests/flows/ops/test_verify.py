"""aiop verify tells the truth about this machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from flows.ops.verify import check_engine, check_packages, check_python, render, run_checks


def run_verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "verify", "--no-docs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_passes_here_and_reports_the_engine_as_optional() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = run_verify(env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Smoke step (local)   PASS" in done.stdout
    assert "Dagger engine" in done.stdout and "All required checks passed." in done.stdout


def test_an_unreachable_prefect_api_is_a_failed_required_check() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run_verify({**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"})
    assert done.returncode == 1
    assert "Prefect API" in done.stdout and "does not answer" in done.stdout
    assert "prefect server start" in done.stdout


def test_checks_are_plain_rows() -> None:
    assert check_python().status == "PASS"
    assert all(c.status == "PASS" for c in check_packages())
    assert not check_engine().required
    text = render(run_checks(include_docs=False))
    assert text.splitlines()[0].startswith("check")
