"""One breaker decision per step attempt, and each error counted once, by the breaker it concerns.

The engine's breaker admits or refuses each attempt once: ``execute_step`` takes the first
attempt's decision before the task run is created (a refused step costs microseconds, not the
8-18 ms of a task run created, failed and recorded) and hands it to that attempt; later attempts
decide themselves. An agent's breaker decides once per step. An engine error counts against the
engine's breaker only, an agent's own error (a timeout) against the agent's only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from adapters import CircuitOpenError, EngineUnavailableError, StepSpec
from adapters.breakers.breaker import Breaker, BreakerPolicy, Permit, get_breaker, reset_breakers
from adapters.chaos import parse_plan
from adapters.errors import StepTimeoutError
from adapters.retry_policy import RetryPolicy
from adapters.selection import resolve_runner
from agents import AgentManager, AgentSpec
from flows.runtime.agent_run import run_agent
from flows.runtime.step_task import StepOutcome, execute_step
from tests.agents.conftest import Breakers, FakeClock, minimal

NO_RETRY = RetryPolicy(attempts=1)
QUICK_RETRIES = RetryPolicy(attempts=3, backoff_s=0, jitter=0)

pytestmark = pytest.mark.prefect


async def _down() -> None:
    await asyncio.sleep(0)
    raise EngineUnavailableError("no engine reachable")


async def open_breaker(breaker: Breaker) -> None:
    for _ in range(breaker.policy.fail_max):
        with contextlib.suppress(EngineUnavailableError):
            await breaker.call(_down)
    assert breaker.state == "open"


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    reset_breakers()
    yield
    reset_breakers()


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many times each breaker decided (admitted or refused) a call."""
    counts: dict[str, int] = {}
    admit = Breaker.admit

    def counted(self: Breaker) -> Permit:
        counts[self.name] = counts.get(self.name, 0) + 1
        return admit(self)

    monkeypatch.setattr(Breaker, "admit", counted)
    return counts


def counting_spec(counter: Path, passes_at: int, name: str = "flaky") -> StepSpec:
    code = (
        f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
        "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
        f"sys.exit(75 if n < {passes_at} else 0)"
    )
    return StepSpec(
        name=name,
        image="python:3.12-slim",
        args=["python", "-c", code],
        transient_exit_codes=frozenset({75}),
    )


def worker(name: str, priority: int, **fields: Any) -> AgentSpec:
    program = f"import sys; print('{name}', sys.argv[1])"
    return AgentSpec.model_validate(
        minimal(
            name=name,
            priority=priority,
            capabilities=["work"],
            command=["python", "-c", program, "{text}"],
            breaker={"fail_max": 1, "reset_timeout": 60},
            **fields,
        )
    )


class TestOneDecisionPerAttempt:
    async def test_each_attempt_is_admitted_once_by_the_engines_breaker(
        self, prefect_api_url: str, tmp_path: Path, decisions: dict[str, int]
    ) -> None:
        spec = counting_spec(tmp_path / "attempts", passes_at=3)

        @flow
        async def once() -> StepOutcome:
            return await execute_step(spec, "local", retry=QUICK_RETRIES)

        outcome = await once()
        assert outcome.state == "Completed" and outcome.attempts == 3
        # execute_step took the first decision before the task run; the attempt used it.
        assert decisions == {"engine:local": 3}
        assert get_breaker("engine:local").snapshot()["probes_in_flight"] == 0

    async def test_an_agents_step_is_decided_once_by_its_breaker_and_per_attempt_by_the_engines(
        self,
        prefect_api_url: str,
        tmp_path: Path,
        breakers: Breakers,
        clock: FakeClock,
        decisions: dict[str, int],
    ) -> None:
        counter = tmp_path / "n"
        code = (
            f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
            "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
            "sys.exit(75 if n < 2 else 0)"
        )
        agent = AgentSpec.model_validate(
            minimal(
                name="flaky",
                capabilities=["work"],
                command=["python", "-c", code, "{text}"],
                retry={"attempts": 3, "backoff_s": 0, "jitter": 0, "transient_exit_codes": [75]},
            )
        )
        manager = AgentManager([agent], breakers=breakers, clock=clock)

        @flow
        async def once() -> StepOutcome:
            return await run_agent(manager, "flaky", {"text": "x"}, "local")

        outcome = await once()
        assert outcome.state == "Completed" and outcome.attempts == 2
        assert decisions == {"agent:flaky": 1, "engine:local": 2}

    async def test_a_cached_result_gives_the_first_decision_back(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        spec = StepSpec(
            name="cached-probe",
            image="python:3.12-slim",
            args=["python", "-c", f"print({str(tmp_path)!r})"],
        )
        breaker = get_breaker("engine:local", BreakerPolicy(fail_max=1, reset_timeout=0.01))

        @flow
        async def once() -> StepOutcome:
            return await execute_step(spec, "local", retry=NO_RETRY)

        assert (await once()).state == "Completed"
        await open_breaker(breaker)
        await asyncio.sleep(0.02)  # its probe time has come: the next decision admits a probe
        again = await once()
        assert again.state == "Cached"
        assert breaker.snapshot()["probes_in_flight"] == 0  # the unused probe slot was freed


class TestEachErrorCountedOnce:
    async def test_an_engine_error_counts_against_the_engine_and_not_the_agent(
        self, prefect_api_url: str, breakers: Breakers, clock: FakeClock
    ) -> None:
        """Before: the agent's breaker counted the engine's error too, and opened."""
        get_breaker("engine:local", BreakerPolicy(fail_max=10))
        runner = resolve_runner("local", plan=parse_plan("kind=engine-down,times=2"))
        agent = worker("only", 0, retry={"attempts": 2, "backoff_s": 0, "jitter": 0})
        manager = AgentManager([agent], breakers=breakers, clock=clock)

        @flow
        async def once() -> StepOutcome:
            return await run_agent(manager, "only", {"text": "x"}, "local", runner=runner)

        outcome = await once()
        assert isinstance(outcome.error, EngineUnavailableError) and outcome.attempts == 2
        assert get_breaker("engine:local").snapshot()["fail_counter"] == 2  # once per attempt
        assert manager.breaker("only").snapshot()["fail_counter"] == 0
        assert manager.breaker("only").state == "closed"

    async def test_an_agents_timeout_counts_against_the_agent_and_not_the_engine(
        self, prefect_api_url: str, breakers: Breakers, clock: FakeClock
    ) -> None:
        """Before: a step's timeout also counted against the engine, which was fine."""
        runner = resolve_runner("local", plan=parse_plan("kind=timeout,times=1"))
        manager = AgentManager([worker("slow", 0, retry={"attempts": 1})], breakers=breakers)

        @flow
        async def once() -> StepOutcome:
            return await run_agent(manager, "slow", {"text": "x"}, "local", runner=runner)

        outcome = await once()
        assert isinstance(outcome.error, StepTimeoutError)
        assert manager.breaker("slow").state == "open"  # fail_max 1: its timeout opened it
        assert get_breaker("engine:local").snapshot()["fail_counter"] == 0

    async def test_fallback_to_the_next_agent_after_an_engine_error_still_works(
        self, prefect_api_url: str, breakers: Breakers, clock: FakeClock
    ) -> None:
        runner = resolve_runner("local", plan=parse_plan("kind=engine-down,times=1"))
        manager = AgentManager(
            [worker("first", 10, retry={"attempts": 1}), worker("second", 0)],
            breakers=breakers,
            clock=clock,
        )

        @flow
        async def once() -> StepOutcome:
            return await run_agent(manager, "work", {"text": "x"}, "local", runner=runner)

        outcome = await once()
        assert outcome.result is not None and outcome.result.stdout.startswith("second ")
        assert [(r.agent, r.ok) for r in manager.recent_runs()] == [
            ("first", False),
            ("second", True),
        ]
        assert get_breaker("engine:local").snapshot()["fail_counter"] == 0  # second succeeded
        assert manager.breaker("first").state == "closed"  # the engine's error, not first's


class TestRefusedBeforeATaskRun:
    async def test_a_rejected_step_creates_no_task_run(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

        name = f"rejected-{tmp_path.name}"
        spec = StepSpec(name=name, image="python:3.12-slim", args=["python", "-c", "pass"])
        await open_breaker(get_breaker("engine:local", BreakerPolicy(fail_max=1)))

        @flow
        async def refused() -> StepOutcome:
            return await execute_step(spec, "local", retry=NO_RETRY)

        outcome = await refused()
        assert outcome.state == "Failed" and outcome.attempts == 0
        assert isinstance(outcome.error, CircuitOpenError)
        assert outcome.error.step == name
        async with get_client() as client:
            runs = await client.read_task_runs(
                task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[name]))
            )
        assert runs == []

    async def test_refused_when_the_probe_comes_after_the_retry_budget(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        await open_breaker(
            get_breaker("engine:local", BreakerPolicy(fail_max=1, reset_timeout=600))
        )
        spec = StepSpec(name="late-probe", image="python:3.12-slim", args=["python", "-c", "pass"])

        @flow
        async def refused() -> StepOutcome:
            return await execute_step(spec, "local", retry=RetryPolicy(attempts=3, budget_s=60))

        outcome = await refused()
        assert isinstance(outcome.error, CircuitOpenError) and outcome.attempts == 0

    async def test_a_cached_step_is_still_served_while_the_breaker_is_open(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        spec = StepSpec(
            name="cached-while-open",
            image="python:3.12-slim",
            args=["python", "-c", f"print({str(tmp_path)!r})"],
        )

        @flow
        async def once() -> StepOutcome:
            return await execute_step(spec, "local", retry=NO_RETRY)

        breaker = get_breaker("engine:local", BreakerPolicy(fail_max=1))
        first = await once()
        assert first.state == "Completed"
        await open_breaker(breaker)
        again = await once()
        assert again.state == "Cached" and again.result is not None
        assert again.result.stdout.strip() == str(tmp_path)

    async def test_each_step_reports_only_its_own_wait_for_the_probe(
        self, prefect_api_url: str, tmp_path: Path
    ) -> None:
        # Two steps of one name, open circuit: each attempt waits for the probe, then retries. The
        # wait is each step's own value, not a per-name total another step adds to meanwhile.
        policy = BreakerPolicy(fail_max=1, reset_timeout=0.5, half_open_max_calls=2)
        retry = RetryPolicy(attempts=2, backoff_s=0, jitter=0)
        specs = [
            StepSpec(name="waits", image="python:3.12-slim", args=["python", "-c", f"print({i!r})"])
            for i in (str(tmp_path), tmp_path.name)
        ]

        @flow
        async def both() -> list[StepOutcome]:
            await open_breaker(
                get_breaker("engine:local", policy)
            )  # in the flow: its start is slow
            return list(
                await asyncio.gather(*(execute_step(s, "local", retry=retry) for s in specs))
            )

        outcomes = await both()
        assert [o.state for o in outcomes] == ["Completed", "Completed"]
        for outcome in outcomes:
            assert outcome.attempts == 2
            assert 0.3 < outcome.breaker_wait_s < min(0.7, outcome.duration_s), outcome


def test_a_timeout_is_the_agents_error_and_an_unreachable_engine_the_engines() -> None:
    assert StepTimeoutError.counted_by == "agent"
    assert EngineUnavailableError.counted_by == "engine"
