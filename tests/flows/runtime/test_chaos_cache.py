"""A chaos plan reaches the steps it targets even when their results are cached."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from prefect import Flow, flow

from adapters import StepSpec
from adapters.chaos import parse_plan
from adapters.selection import StepRunner, resolve_runner
from flows.runtime.step_task import StepOutcome, execute_step


@pytest.mark.prefect
async def test_a_targeted_cached_step_runs_again_and_the_fault_shows_in_one_line(
    prefect_api_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = StepSpec(
        name="chaos-target", image="python:3.12-slim", args=["python", "-c", f"# {tmp_path}"]
    )
    other = StepSpec(
        name="chaos-other", image="python:3.12-slim", args=["python", "-c", f"# {tmp_path} 2"]
    )

    def both(runner: StepRunner) -> Flow[[], Coroutine[Any, Any, tuple[StepOutcome, StepOutcome]]]:
        @flow
        async def both_steps() -> tuple[StepOutcome, StepOutcome]:
            return (
                await execute_step(target, "local", runner=runner),
                await execute_step(other, "local", runner=runner),
            )

        return both_steps

    first = await both(resolve_runner("local"))()
    assert [o.state for o in first] == ["Completed", "Completed"]
    plan = parse_plan("step=chaos-target,kind=permanent-exit", source="--chaos")
    with caplog.at_level(logging.INFO):
        hit, untouched = await both(resolve_runner("local", plan=plan))()
    assert hit.state == "Failed" and hit.attempts == 1
    assert untouched.state == "Cached"
    injected = [m for r in caplog.records if (m := r.getMessage()).startswith("[engine] chaos:")]
    assert len(injected) == 1 and "step=chaos-target,kind=permanent-exit" in injected[0]


@pytest.mark.prefect
async def test_a_plan_carried_by_the_runner_reaches_only_the_steps_given_that_runner(
    prefect_api_url: str, tmp_path: Path
) -> None:
    spec = StepSpec(
        name="chaos-carried", image="python:3.12-slim", args=["python", "-c", f"# {tmp_path}"]
    )
    with_plan = resolve_runner("local", plan=parse_plan("step=chaos-carried,kind=permanent-exit"))

    @flow
    async def twice() -> tuple[StepOutcome, StepOutcome]:
        # the fault rides with the runner the first call is given, and only there
        return await execute_step(spec, "local", runner=with_plan), await execute_step(spec)

    hit, clean = await twice()
    assert hit.state == "Failed" and hit.result is None
    assert clean.state == "Completed" and clean.result is not None
    assert with_plan.plan is not None and with_plan.plan.faults[0].hits == 1
