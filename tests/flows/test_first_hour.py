"""A failed run as a new user sees it: the console, the failure artifact, the history.

The CLI runs as a subprocess against a Prefect server with an injected permanent failure in
``transform`` (after ``ingest`` and ``validate`` finished).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def failed_run(prefect_api_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One CLI run that fails at transform-0: its console, exit code and summary.json."""
    base = tmp_path_factory.mktemp("first-hour")
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url}
    env.pop("AIOP_CHAOS", None)
    args = ["--rows", "1000", "--partitions", "2", "--backend", "local"]
    args += ["--output", str(base / "out"), "--work-dir", str(base / "work")]
    args += ["--chaos", "step=transform,kind=permanent-exit"]
    done = subprocess.run(
        [sys.executable, "-m", "flows.data_pipeline", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    summary = json.loads((base / "out" / "summary.json").read_text(encoding="utf-8"))
    return {"done": done, "console": done.stdout + done.stderr, "summary": summary}


def test_the_console_prints_the_error_once(failed_run: dict[str, Any]) -> None:
    console = failed_run["console"]
    assert failed_run["done"].returncode == 1, console
    assert console.count("exited with code 1") == 1, console
    assert "Finished in state Failed(" not in console, console
    # ...and that once is the last paragraph, with where to read more.
    assert failed_run["done"].stderr.strip().endswith("troubleshooting/#step-failed"), console


def test_the_failure_artifact_says_what_happened_in_a_full_sentence(
    failed_run: dict[str, Any],
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    run_id = failed_run["summary"]["flow_run_id"]

    async def read() -> str:
        async with get_client() as client:
            (artifact,) = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["data-pipeline-failure"]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                )
            )
        return str(artifact.data)

    text = asyncio.run(read())
    (line,) = [x for x in text.splitlines() if x.startswith("**What happened**")]
    assert line.endswith("."), line
    assert "last stderr lines:" not in line and "exited with code 1" in line, line
    assert "chaos: injected" in text.split(line, 1)[1]  # the stderr block follows it


def test_history_shows_the_rows_and_backend_of_a_run_that_failed_late(
    failed_run: dict[str, Any],
) -> None:
    from flows.ui.history import read_history

    run_id = failed_run["summary"]["flow_run_id"]
    records = asyncio.run(read_history("data-pipeline", last=50))
    names = {r.name: r for r in records}

    async def name_of() -> str:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            return (await client.read_flow_run(run_id)).name

    record = names[asyncio.run(name_of())]
    assert record.state == "Failed"
    assert (record.input_rows, record.valid_rows, record.backend) == (1000, 997, "local"), record
    assert failed_run["summary"]["input_rows"] == 1000  # summary.json says so too
