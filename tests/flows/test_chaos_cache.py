"""A chaos plan reaches the steps it targets even when their results are cached."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow

from adapters import StepSpec
from adapters.chaos import active_plan, install_plan, parse_plan
from adapters.selection import resolve_runner
from flows.step_task import StepOutcome, execute_step


@pytest.fixture
def no_plan() -> Iterator[None]:
    install_plan(None)
    yield
    install_plan(None)


@pytest.mark.prefect
async def test_a_targeted_cached_step_runs_again_and_the_fault_shows_in_one_line(
    prefect_api_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, no_plan: None
) -> None:
    target = StepSpec(
        name="chaos-target", image="python:3.12-slim", args=["python", "-c", f"# {tmp_path}"]
    )
    other = StepSpec(
        name="chaos-other", image="python:3.12-slim", args=["python", "-c", f"# {tmp_path} 2"]
    )

    @flow
    async def both() -> tuple[StepOutcome, StepOutcome]:
        return await execute_step(target, "local"), await execute_step(other, "local")

    first = await both()
    assert [o.state for o in first] == ["Completed", "Completed"]
    install_plan(parse_plan("step=chaos-target,kind=permanent-exit", source="--chaos"))
    with caplog.at_level(logging.INFO):
        hit, untouched = await both()
    assert hit.state == "Failed" and hit.attempts == 1
    assert untouched.state == "Cached"
    injected = [m for r in caplog.records if (m := r.getMessage()).startswith("[engine] chaos:")]
    assert len(injected) == 1 and "step=chaos-target,kind=permanent-exit" in injected[0]


@pytest.mark.prefect
async def test_a_plan_carried_by_the_runner_reaches_only_the_steps_given_that_runner(
    prefect_api_url: str, tmp_path: Path, no_plan: None
) -> None:
    spec = StepSpec(
        name="chaos-carried", image="python:3.12-slim", args=["python", "-c", f"# {tmp_path}"]
    )
    with_plan = resolve_runner("local", plan=parse_plan("step=chaos-carried,kind=permanent-exit"))

    @flow
    async def twice() -> tuple[StepOutcome, StepOutcome]:
        # nothing installed process-wide: the fault rides with the runner the first call is given
        return await execute_step(spec, "local", runner=with_plan), await execute_step(spec)

    hit, clean = await twice()
    assert active_plan() is None
    assert hit.state == "Failed" and hit.result is None
    assert clean.state == "Completed" and clean.result is not None
    assert with_plan.plan is not None and with_plan.plan.faults[0].hits == 1
