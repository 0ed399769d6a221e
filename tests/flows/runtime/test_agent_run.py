"""run_agent through Prefect (local runner): fallback on an open breaker and on an
infrastructure error, no fallback on a step's own failure, refusals before anything runs, and
secrets from a Prefect Secret block, masked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prefect import flow

from adapters.errors import StepFailedError, StepTimeoutError
from agents import AgentManager, AgentRefusedError, AgentSpec
from flows.runtime.agent_run import run_agent
from flows.runtime.step_task import StepOutcome
from tests.agents.conftest import Breakers, FakeClock, minimal
from tests.agents.test_manager import trip

pytestmark = pytest.mark.prefect


def printer(name: str, priority: int, code: str | None = None, **fields: Any) -> AgentSpec:
    """An agent for capability 'work' that prints its name and its 'text' parameter."""
    program = code or f"import sys; print('{name}', sys.argv[1])"
    return AgentSpec.model_validate(
        minimal(
            name=name,
            priority=priority,
            capabilities=["work"],
            command=["python", "-c", program, "{text}"],
            retry={"attempts": 1},
            breaker={"fail_max": 1, "reset_timeout": 60},
            **fields,
        )
    )


def in_flow(run: Callable[[], Awaitable[StepOutcome]]) -> Callable[[], Awaitable[StepOutcome]]:
    @flow(name="agents-test", validate_parameters=False)
    async def agents_test() -> StepOutcome:
        return await run()

    return agents_test


async def test_falls_back_when_the_chosen_agents_breaker_does_not_admit_it(
    prefect_api_url: str, breakers: Breakers, clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    manager = AgentManager(
        [printer("primary", 10), printer("secondary", 0)], breakers=breakers, clock=clock
    )
    primary, secondary = manager.breaker("primary"), manager.breaker("secondary")
    await trip(primary)
    await trip(secondary)
    clock.advance(60)  # both may probe now; primary ranks first by priority...
    probe = primary.admit()  # ...but its only probe slot is taken by a call in flight
    try:
        assert manager.select("work").name == "primary"
        text = request.node.name
        outcome = await in_flow(lambda: run_agent(manager, "work", {"text": text}, "local"))()
    finally:
        probe.release()
    assert outcome.error is None and outcome.result is not None
    assert outcome.result.stdout == f"secondary {text}\n"
    assert [(r.agent, r.ok) for r in manager.recent_runs()] == [("secondary", True)]
    assert secondary.state == "closed"  # its successful probe closed it


async def test_an_open_breaker_passes_the_work_to_the_next_agent(
    prefect_api_url: str, breakers: Breakers, clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    manager = AgentManager(
        [printer("primary", 10), printer("secondary", 0)], breakers=breakers, clock=clock
    )
    await trip(manager.breaker("primary"))
    outcome = await in_flow(
        lambda: run_agent(manager, "work", {"text": request.node.name}, "local")
    )()
    assert outcome.result is not None and outcome.result.stdout.startswith("secondary ")
    assert [r.agent for r in manager.recent_runs()] == ["secondary"]


async def test_falls_back_after_an_infrastructure_error_which_the_breaker_counts(
    prefect_api_url: str, breakers: Breakers, clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    slow = printer("slow", 10, code="import time; time.sleep(30)", timeout_s=0.5)
    manager = AgentManager([slow, printer("quick", 0)], breakers=breakers, clock=clock)
    outcome = await in_flow(
        lambda: run_agent(manager, "work", {"text": request.node.name}, "local")
    )()
    assert outcome.result is not None and outcome.result.stdout.startswith("quick ")
    assert [(r.agent, r.ok) for r in manager.recent_runs()] == [("slow", False), ("quick", True)]
    assert manager.breaker("slow").state == "open"  # fail_max 1: the timeout opened it
    assert manager.select("work").name == "quick"


async def test_the_last_agents_infrastructure_error_is_the_outcome(
    prefect_api_url: str, breakers: Breakers, request: pytest.FixtureRequest
) -> None:
    slow = printer("slow", 10, code="import time; time.sleep(30)", timeout_s=0.5)
    manager = AgentManager([slow], breakers=breakers)
    outcome = await in_flow(
        lambda: run_agent(manager, "slow", {"text": request.node.name}, "local")
    )()
    assert isinstance(outcome.error, StepTimeoutError) and outcome.state == "Failed"


async def test_a_steps_own_failure_is_final(
    prefect_api_url: str, breakers: Breakers, request: pytest.FixtureRequest
) -> None:
    failing = printer("failing", 10, code="import sys; sys.exit(3)")
    manager = AgentManager([failing, printer("spare", 0)], breakers=breakers)
    outcome = await in_flow(
        lambda: run_agent(manager, "work", {"text": request.node.name}, "local")
    )()
    assert isinstance(outcome.error, StepFailedError) and outcome.error.exit_code == 3
    assert [(r.agent, r.ok) for r in manager.recent_runs()] == [("failing", False)]
    assert manager.breaker("failing").state == "closed"  # the engine ran it: not a breaker failure
    assert manager.select("work").name == "spare"  # but its success rate dropped


async def test_when_no_agent_can_run_the_outcome_says_why_and_nothing_ran(
    prefect_api_url: str, breakers: Breakers
) -> None:
    manager = AgentManager(
        [printer("a", 1, secrets=["A_TOKEN"]), printer("b", 0, secrets=["B_TOKEN"])],
        breakers=breakers,
        environ={},
    )
    outcome = await in_flow(lambda: run_agent(manager, "work", {"text": "x"}, "local"))()
    assert isinstance(outcome.error, AgentRefusedError)
    assert (outcome.state, outcome.attempts, outcome.name) == ("Failed", 0, "work")
    message = str(outcome.error)
    assert "agent 'a' is refused" in message and "secret B_TOKEN is not set" in message
    assert manager.recent_runs() == []


async def test_a_secret_from_a_prefect_secret_block_reaches_the_step_masked(
    prefect_api_url: str, breakers: Breakers, request: pytest.FixtureRequest
) -> None:
    from prefect.blocks.system import Secret

    await Secret(value="s3cr3t-value").asave("aiop-test-token", overwrite=True)  # type: ignore[arg-type]
    code = "import os, sys; print(sys.argv[1], os.environ['AIOP_TEST_TOKEN'])"
    agent = printer("secretive", 0, code=code, secrets=["AIOP_TEST_TOKEN"])
    manager = AgentManager([agent], breakers=breakers, environ={})
    outcome = await in_flow(
        lambda: run_agent(
            manager, "secretive", {"text": request.node.name}, "local", step_name="sec"
        )
    )()
    assert outcome.result is not None and outcome.name == "sec"
    assert outcome.result.stdout == f"{request.node.name} ***\n"


async def test_prepare_shapes_the_spec_before_it_runs(
    prefect_api_url: str, breakers: Breakers, tmp_path: Any
) -> None:
    code = (
        "import sys, pathlib; out = pathlib.Path(sys.argv[2]); out.mkdir(parents=True);"
        " (out / 'f.txt').write_text(sys.argv[1])"
    )
    agent = AgentSpec.model_validate(
        minimal(name="writer", command=["python", "-c", code, "{text}", "/aiop/out"])
    )
    manager = AgentManager([agent], breakers=breakers)
    target = tmp_path / "out"
    outcome = await in_flow(
        lambda: run_agent(
            manager,
            "writer",
            {"text": "written"},
            "local",
            prepare=lambda s, key: s.model_copy(update={"outputs": {"/aiop/out": str(target)}}),
        )
    )()
    assert outcome.error is None, outcome.error
    assert (target / "f.txt").read_text() == "written"
