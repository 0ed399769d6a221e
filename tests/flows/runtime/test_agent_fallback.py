"""run_agent's fallback rules with a fake "run one step" function: no Prefect, no processes.

No test here changes a breaker's state through ``run_agent``: a transition emits a Prefect event,
which outside a flow would start Prefect's temporary server (test_agent_run.py covers those).

The same rules run through Prefect and the local runner in test_agent_run.py; here each case
takes milliseconds, because the agents layer no longer reaches up into flows to run a step.
"""

from __future__ import annotations

from typing import Any

import pytest

from adapters.contract import StepResult, StepSpec
from adapters.errors import InfrastructureError, StepFailedError, StepTimeoutError
from adapters.retry_policy import RetryPolicy
from adapters.settings import Settings
from agents import AgentManager, AgentRefusedError, AgentSpec
from flows.runtime.agent_run import run_agent
from flows.runtime.cache_key import StepKey
from flows.runtime.outcome import StepOutcome
from tests.agents.conftest import Breakers, FakeClock, minimal
from tests.agents.test_manager import trip


def agent(name: str, priority: int, *, fail_max: int = 1, **fields: Any) -> AgentSpec:
    return AgentSpec.model_validate(
        minimal(
            name=name,
            priority=priority,
            capabilities=["work"],
            command=["python", "-c", "pass", "{text}"],
            retry={"attempts": 1},
            breaker={"fail_max": fail_max, "reset_timeout": 60},
            **fields,
        )
    )


class FakeExecute:
    """Stands in for execute_step: the outcome per agent comes from a table; calls are kept."""

    def __init__(self, errors: dict[str, BaseException | None]) -> None:
        self.errors = errors
        self.calls: list[tuple[str, str | None, str | None]] = []
        self.retries: list[RetryPolicy | None] = []

    async def __call__(
        self,
        spec: StepSpec,
        backend: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        agent: str | None = None,
        key: StepKey | None = None,
    ) -> StepOutcome:
        assert agent is not None
        self.calls.append((agent, spec.name, backend))
        self.retries.append(retry)
        error = self.errors.get(agent)
        if error is not None:
            return StepOutcome(spec.name, "Failed", 1, 0.01, error=error)
        result = StepResult(
            step=spec.name, exit_code=0, stdout=agent, stderr="", duration_s=0.01, backend="local"
        )
        return StepOutcome(spec.name, "Completed", 1, 0.01, result=result)


async def test_an_infrastructure_error_passes_the_work_on_and_the_breaker_counts_it(
    breakers: Breakers, clock: FakeClock
) -> None:
    manager = AgentManager(
        [agent("slow", 10, fail_max=2), agent("quick", 0)], breakers=breakers, clock=clock
    )
    execute = FakeExecute({"slow": StepTimeoutError("too slow", step="work", timeout_s=0.5)})
    outcome = await run_agent(manager, "work", {"text": "x"}, "local", execute=execute)
    assert outcome.result is not None and outcome.result.stdout == "quick"
    assert [c[0] for c in execute.calls] == ["slow", "quick"]
    assert manager.breaker("slow").snapshot()["fail_counter"] == 1
    assert [(r.agent, r.ok) for r in manager.recent_runs()] == [("slow", False), ("quick", True)]


async def test_the_last_agents_infrastructure_error_is_the_outcome(breakers: Breakers) -> None:
    manager = AgentManager([agent("only", 0, fail_max=2)], breakers=breakers)
    error = StepTimeoutError("too slow", step="work", timeout_s=0.5)
    outcome = await run_agent(manager, "work", {"text": "x"}, execute=FakeExecute({"only": error}))
    assert outcome.error is error and isinstance(outcome.error, InfrastructureError)
    assert manager.breaker("only").snapshot()["fail_counter"] == 1


async def test_a_steps_own_failure_is_final(breakers: Breakers) -> None:
    manager = AgentManager([agent("failing", 10), agent("spare", 0)], breakers=breakers)
    failed = StepFailedError("exit 3", step="work", exit_code=3)
    execute = FakeExecute({"failing": failed})
    outcome = await run_agent(manager, "work", {"text": "x"}, execute=execute)
    assert outcome.error is failed
    assert [c[0] for c in execute.calls] == ["failing"]
    assert manager.breaker("failing").state == "closed"


async def test_an_open_breaker_skips_the_agent_without_running_it(
    breakers: Breakers, clock: FakeClock
) -> None:
    manager = AgentManager(
        [agent("primary", 10), agent("secondary", 0)], breakers=breakers, clock=clock
    )
    await trip(manager.breaker("primary"))
    execute = FakeExecute({})
    outcome = await run_agent(manager, "work", {"text": "x"}, "local", execute=execute)
    assert outcome.result is not None and outcome.result.stdout == "secondary"
    assert execute.calls == [("secondary", "secondary", "local")]


async def test_when_no_agent_can_run_nothing_runs_and_the_outcome_says_why(
    breakers: Breakers,
) -> None:
    manager = AgentManager(
        [agent("a", 1, secrets=["A_TOKEN"]), agent("b", 0, secrets=["B_TOKEN"])],
        breakers=breakers,
        environ={},
    )
    execute = FakeExecute({})
    outcome = await run_agent(manager, "work", {"text": "x"}, "local", execute=execute)
    assert isinstance(outcome.error, AgentRefusedError)
    assert (outcome.state, outcome.attempts, outcome.name) == ("Failed", 0, "work")
    assert execute.calls == [] and manager.recent_runs() == []


async def test_prepare_shapes_the_spec_and_step_name_names_it(breakers: Breakers) -> None:
    manager = AgentManager([agent("one", 0)], breakers=breakers)
    execute = FakeExecute({})

    def prepare(spec: StepSpec, key: str) -> StepSpec:
        return spec.model_copy(update={"env": {"EXTRA": "1"}})

    await run_agent(
        manager,
        "one",
        {"text": "x"},
        step_name="named",
        prepare=prepare,
        execute=execute,
        settings=Settings(backend="local"),
    )
    assert execute.calls == [("one", "named", "local")]


async def test_the_retry_settings_apply_over_the_agents_retry_section(breakers: Breakers) -> None:
    own = AgentSpec.model_validate(
        minimal(
            name="one",
            capabilities=["work"],
            command=["python", "-c", "pass", "{text}"],
            retry={"attempts": 2, "backoff_s": 4.0},
        )
    )
    execute = FakeExecute({})
    manager = AgentManager([own], breakers=breakers)
    await run_agent(
        manager, "one", {"text": "x"}, execute=execute, settings=Settings(retry={"attempts": 5})
    )
    await run_agent(manager, "one", {"text": "x"}, execute=execute, settings=Settings())
    first, second = execute.retries
    assert first is not None and (first.attempts, first.backoff_s) == (5, 4.0)
    assert second is not None and (second.attempts, second.backoff_s) == (2, 4.0)


@pytest.mark.parametrize("target", ["nobody", "no-such-capability"])
async def test_an_unknown_target_is_refused_before_anything_runs(
    breakers: Breakers, target: str
) -> None:
    from agents import AgentNotFoundError

    manager = AgentManager([agent("one", 0)], breakers=breakers)
    execute = FakeExecute({})
    with pytest.raises(AgentNotFoundError):
        await run_agent(manager, target, {"text": "x"}, execute=execute)
    assert execute.calls == []
