"""A run killed with SIGKILL ends Crashed: in the API, in ``flows.ui.history`` and in the history chart.

A real ``python -m flows.data_pipeline`` runs against a Prefect server with its ``aggregate`` step
slowed down, and its whole process group gets SIGKILL mid-step, as the OOM killer or ``kill -9``
would. Prefect leaves such a run ``Running``; the next command that looks (``flows.ui.history``, the
next pipeline run) must find that its process is gone and set it ``Crashed``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from flows.server.crashed_runs import ProcessId, this_process

ROOT = Path(__file__).resolve().parents[3]


class TestProcessId:
    def test_this_process_runs_and_its_label_reads_back(self) -> None:
        process = this_process()
        assert process.is_running()
        assert ProcessId.parse(process.label()) == process

    def test_a_process_that_ended_is_not_running(self) -> None:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        process = ProcessId(
            socket.gethostname(), child.pid, psutil.Process(child.pid).create_time()
        )
        assert process.is_running()
        child.kill()
        child.wait()
        assert not process.is_running()

    def test_a_reused_pid_is_not_the_process_recorded(self) -> None:
        me = this_process()
        earlier = ProcessId(me.host, me.pid, me.started - 3600)  # same pid, another start
        assert not earlier.is_running()

    @pytest.mark.parametrize("text", [None, "", "x", "host:12", "host:abc:1.0", 42])
    def test_labels_it_did_not_write_are_ignored(self, text: object) -> None:
        assert ProcessId.parse(text) is None

    def test_a_host_name_with_colons_reads_back(self) -> None:
        process = ProcessId("fe80::1", 7, 1.5)
        assert ProcessId.parse(process.label()) == process


@dataclass(frozen=True)
class Killed:
    id: str
    name: str
    pid: int


def _env(api: str) -> dict[str, str]:
    env = {**os.environ, "PREFECT_API_URL": api, "PYTHONUNBUFFERED": "1"}
    env.pop("AIOP_CHAOS", None)
    return env


async def _flow_run_of(output: Path) -> Any:
    """The data-pipeline run writing into ``output`` (found by its parameters, not by a label)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["data-pipeline"]))
        )
    mine = [r for r in runs if r.parameters.get("output") == str(output)]
    return mine[0] if mine else None


async def _running_tasks(flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    async with get_client() as client:
        tasks = await client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
        )
    return [t.name for t in tasks if t.state and t.state.is_running()]


def _kill_a_run(api: str, base: Path) -> Killed:
    """Start the main job, SIGKILL its process group while ``aggregate`` runs; the killed run."""
    output = base / "out"
    base.mkdir(parents=True, exist_ok=True)
    args = ["--rows", "400", "--partitions", "1", "--backend", "local"]
    args += ["--output", str(output), "--work-dir", str(base / "work")]
    args += ["--chaos", "step=aggregate,kind=slow,seconds=120"]
    log = (base / "killed.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.data_pipeline", *args],
        cwd=ROOT,
        env=_env(api),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        run = None
        while time.monotonic() < deadline and proc.poll() is None:
            run = asyncio.run(_flow_run_of(output))
            if run is not None and any(
                t.startswith("aggregate") for t in asyncio.run(_running_tasks(str(run.id)))
            ):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the run never reached aggregate:\n{(base / 'killed.log').read_text()}")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert run is not None
    return Killed(str(run.id), run.name, proc.pid)


async def _state_of(flow_run_id: str) -> tuple[str, str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
    assert run.state is not None
    return run.state.name, run.state.message or ""


@pytest.mark.slow
@pytest.mark.prefect
def test_a_killed_run_ends_crashed_in_the_api_and_in_flows_history(
    prefect_api_url: str, tmp_path: Path
) -> None:
    killed = _kill_a_run(prefect_api_url, tmp_path)
    # Prefect itself leaves it Running, its aggregate task too: nothing reported the kill.
    assert asyncio.run(_state_of(killed.id))[0] == "Running"

    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "history", "--last", "50"],
        cwd=ROOT,
        env=_env(prefect_api_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.startswith(killed.name + " ")]
    assert row.split()[1] == "Crashed", done.stdout
    assert f"flow run '{killed.name}' was still Running" in done.stderr, done.stderr
    state, message = asyncio.run(_state_of(killed.id))
    assert state == "Crashed" and f"pid {killed.pid} on {socket.gethostname()}" in message
    assert asyncio.run(_running_tasks(killed.id)) == []  # its aggregate task run ended with it


@pytest.mark.slow
@pytest.mark.prefect
def test_the_next_pipeline_run_marks_it_and_its_history_chart_says_crashed(
    prefect_api_url: str, tmp_path: Path
) -> None:
    killed = _kill_a_run(prefect_api_url, tmp_path / "killed")
    next_run = tmp_path / "next"
    args = ["--rows", "50", "--partitions", "1", "--backend", "local"]
    args += ["--output", str(next_run / "out"), "--work-dir", str(next_run / "work")]
    done = subprocess.run(
        [sys.executable, "-m", "flows.data_pipeline", *args],
        cwd=ROOT,
        env=_env(prefect_api_url),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"flow run '{killed.name}' was still Running" in done.stdout + done.stderr
    assert asyncio.run(_state_of(killed.id))[0] == "Crashed"
    run_id = json.loads((next_run / "out" / "summary.json").read_text("utf-8"))["flow_run_id"]
    history = asyncio.run(_history_artifact(run_id))
    (row,) = [line for line in history.splitlines() if line.startswith(f"| {killed.name} |")]
    assert "| Crashed |" in row, row
    assert f'"{killed.name} (Crashed)"' in history  # the chart's bar says so too


async def _history_artifact(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    async with get_client() as client:
        (artifact,) = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["data-pipeline-history"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    return str(artifact.data)
