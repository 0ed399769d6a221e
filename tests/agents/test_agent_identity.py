"""Which agent ran a step stays visible without Prefect tags.

A tagged task run makes Prefect reserve tag concurrency slots before it starts; on a SQLite server
that request meets a locked database and the client sleeps 2 s (PLATFORM.md). The pipeline's task
runs therefore carry no tags: the agent is in the task run's name (``<step> [<agent>]``) and in an
``aiop.agent.step.<state>`` event, and ``agents.recent`` finds the agent's runs by name.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any
from uuid import UUID

import pytest

from agents.recent import agent_run_name, ran_by, read_recent_runs

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

_RECORDED_WITHIN_S = 30.0  # the server records task runs and events in batches


@pytest.fixture(scope="module")
def pipeline_run(prefect_api_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from flows.data_pipeline.flow import data_pipeline

    base = tmp_path_factory.mktemp("identity")
    summary = asyncio.run(
        data_pipeline(
            rows=300,
            partitions=2,
            output=str(base / "out"),
            work_dir=str(base / "work"),
            backend="local",
        )
    )
    assert isinstance(summary, dict)
    return summary


async def _task_runs(flow_run_id: str, expected: int) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    deadline = time.monotonic() + _RECORDED_WITHIN_S
    async with get_client() as client:
        while True:
            runs = await client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    flow_run_id=TaskRunFilterFlowRunId(any_=[UUID(flow_run_id)])
                )
            )
            if len(runs) >= expected or time.monotonic() > deadline:
                return list(runs)
            await asyncio.sleep(0.5)


class TestPipelineTaskRuns:
    async def test_no_task_run_carries_a_tag(self, pipeline_run: dict[str, Any]) -> None:
        steps = pipeline_run["steps"]
        runs = await _task_runs(pipeline_run["flow_run_id"], len(steps))
        assert len(runs) == len(steps)
        assert {r.name: list(r.tags) for r in runs} == {r.name: [] for r in runs}

    async def test_each_task_run_names_its_step_and_agent(
        self, pipeline_run: dict[str, Any]
    ) -> None:
        from agents import AgentManager

        manager = AgentManager.from_paths()
        steps = [s["name"] for s in pipeline_run["steps"]]
        runs = await _task_runs(pipeline_run["flow_run_id"], len(steps))
        expected = {agent_run_name(step, manager.select(step.split("-")[0]).name) for step in steps}
        assert {r.name for r in runs} == expected
        assert ran_by(agent_run_name("transform-1", "transform-duckdb")) == "transform-duckdb"

    async def test_recent_runs_still_find_each_agent(self, pipeline_run: dict[str, Any]) -> None:
        names = ["ingest-duckdb", "validate-duckdb", "transform-duckdb", "aggregate-duckdb"]
        deadline = time.monotonic() + _RECORDED_WITHIN_S
        while True:
            found, why_not = await read_recent_runs(names, api_url=os.environ["PREFECT_API_URL"])
            assert why_not is None
            if all(found[n].ok >= 1 for n in names) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert {n: found[n].ok >= 1 for n in names} == dict.fromkeys(names, True)
        # transform-duckdb ran 2 partitions; transform-duckdb-lowmem (a longer name sharing the
        # prefix) ran nothing and must not be credited with them
        lowmem, _ = await read_recent_runs(
            ["transform-duckdb-lowmem"], api_url=os.environ["PREFECT_API_URL"]
        )
        assert lowmem["transform-duckdb-lowmem"].ok == 0

    async def test_each_step_emits_an_event_on_its_agent(
        self, pipeline_run: dict[str, Any]
    ) -> None:
        from prefect.client.orchestration import get_client
        from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

        flow_run = f"prefect.flow-run.{pipeline_run['flow_run_id']}"
        deadline = time.monotonic() + _RECORDED_WITHIN_S
        async with get_client() as client:
            while True:
                page = await client.read_events(
                    EventFilter(
                        event=EventNameFilter(prefix=["aiop.agent.step."]),
                        resource=EventResourceFilter(id_prefix=["aiop.agent."]),
                    ),
                    limit=50,
                )
                mine = [e for e in page.events if any(r.id == flow_run for r in e.related)]
                if len(mine) >= len(pipeline_run["steps"]) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        by_step = {e.payload["step"]: e for e in mine}
        assert sorted(by_step) == sorted(s["name"] for s in pipeline_run["steps"])
        validate = by_step["validate"]
        assert validate.event == "aiop.agent.step.completed"
        assert validate.resource.id == "aiop.agent.validate-duckdb"
        assert any(r.role == "task-run" for r in validate.related)
        assert validate.payload["run_s"] > 0


def test_the_agent_in_a_task_run_name_reads_back() -> None:
    assert agent_run_name("report", None) == "report"
    assert ran_by("report") is None
    assert ran_by("odd [name] [a_b]") == "a_b"
    assert ran_by(agent_run_name("s", "x.y-z")) == "x.y-z"
