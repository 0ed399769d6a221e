"""A step the open engine breaker rejects is refused before its task run is created.

Creating, failing and recording a task run costs 8-18 ms on a server; asking the breaker costs
microseconds. A task run is still created when it can do better than a rejection: when the step's
result is cached, or when ``run_step`` would wait for the probe and retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from adapters import CircuitOpenError, EngineUnavailableError, StepSpec
from adapters.breakers.breaker import Breaker, BreakerPolicy, get_breaker, reset_breakers
from adapters.retry_policy import RetryPolicy
from flows.runtime.breaker_precheck import rejection_before_start
from flows.runtime.step_task import StepOutcome, execute_step

START = 1_700_000_000.0
NO_RETRY = RetryPolicy(attempts=1)


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


async def _down() -> None:
    await asyncio.sleep(0)
    raise EngineUnavailableError("no engine reachable")


async def open_breaker(breaker: Breaker) -> None:
    for _ in range(breaker.policy.fail_max):
        with contextlib.suppress(EngineUnavailableError):
            await breaker.call(_down)
    assert breaker.state == "open"


@pytest.fixture(autouse=True)
def _fresh_registry() -> Any:
    reset_breakers()
    yield
    reset_breakers()


class TestBreakerRejection:
    async def test_an_open_breaker_names_its_rejection_without_changing_state(self) -> None:
        clock = FakeClock()
        breaker = Breaker("engine:t", BreakerPolicy(fail_max=2, reset_timeout=30), clock=clock)
        assert breaker.rejection() is None
        await open_breaker(breaker)
        exc = breaker.rejection()
        assert isinstance(exc, CircuitOpenError) and exc.probe_at == START + 30
        clock.now += 30  # probe time: a call would be admitted as a probe
        assert breaker.rejection() is None
        assert breaker.state == "open"  # asking moved nothing, took no probe slot
        assert await breaker.call(lambda: asyncio.sleep(0, "probe")) == "probe"
        assert breaker.state == "closed"

    async def test_a_half_open_breaker_with_every_probe_slot_taken_rejects(self) -> None:
        clock = FakeClock()
        policy = BreakerPolicy(fail_max=1, reset_timeout=1, half_open_max_calls=1)
        breaker = Breaker("engine:t", policy, clock=clock)
        await open_breaker(breaker)
        clock.now += 1
        release = asyncio.Event()

        async def slow_probe() -> None:
            await release.wait()

        probe = asyncio.create_task(breaker.call(slow_probe))
        await asyncio.sleep(0)
        assert isinstance(breaker.rejection(), CircuitOpenError)
        release.set()
        await probe
        assert breaker.rejection() is None


class TestRejectionBeforeStart:
    async def test_refused_when_no_retry_would_wait_for_the_probe(self) -> None:
        await open_breaker(get_breaker("engine:local", BreakerPolicy(fail_max=1)))
        exc = rejection_before_start("local", NO_RETRY, step="s")
        assert isinstance(exc, CircuitOpenError) and exc.step == "s"
        assert exc.breaker == "engine:local"

    async def test_left_to_the_task_run_when_a_retry_waits_for_the_probe(self) -> None:
        await open_breaker(get_breaker("engine:local", BreakerPolicy(fail_max=1, reset_timeout=5)))
        policy = RetryPolicy(attempts=3, budget_s=60)
        assert rejection_before_start("local", policy, step="s") is None

    async def test_refused_when_the_probe_comes_after_the_retry_budget(self) -> None:
        policy = BreakerPolicy(fail_max=1, reset_timeout=600)
        await open_breaker(get_breaker("engine:local", policy))
        retry = RetryPolicy(attempts=3, budget_s=60)
        exc = rejection_before_start("local", retry, step="s")
        assert isinstance(exc, CircuitOpenError)

    def test_a_closed_breaker_rejects_nothing(self) -> None:
        assert rejection_before_start("local", NO_RETRY, step="s") is None


@pytest.mark.prefect
class TestThroughPrefect:
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
