"""Behaviour of adapters.breakers.breaker: what counts, open / half-open / closed, listeners, registry, policy.

A fake clock drives every timing decision; only the concurrency acceptance test really waits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from adapters.breakers.breaker import (
    Breaker,
    BreakerEvent,
    BreakerPolicy,
    admit_all,
    get_breaker,
    reset_breakers,
)
from adapters.errors import (
    AiopError,
    CircuitOpenError,
    EngineConnectionError,
    EngineUnavailableError,
    InfrastructureError,
    InvalidInputError,
    InvalidSpecError,
    ProviderUnavailableError,
    ProvisioningTimeoutError,
    RegistryUnavailableError,
    StepFailedError,
    StepTimeoutError,
)
from adapters.settings import Settings

START = 1_700_000_000.0


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Target:
    """A guarded coroutine factory that counts how often it was really called."""

    def __init__(self, exc: BaseException | None = None, result: Any = "ok") -> None:
        self.exc = exc
        self.result = result
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        await asyncio.sleep(0)  # fail after a suspension, like a real engine call
        if self.exc is not None:
            raise self.exc
        return self.result


def infra() -> EngineUnavailableError:
    return EngineUnavailableError("no engine reachable")


def step_failed() -> StepFailedError:
    return StepFailedError("exit 1", step="build", exit_code=1)


async def attempt(breaker: Breaker, fn: Callable[[], Awaitable[Any]]) -> BaseException | None:
    """Call through the breaker and return what it raised (None on success)."""
    try:
        await breaker.call(fn)
    except BaseException as exc:
        return exc
    return None


async def fail_times(
    breaker: Breaker, n: int, exc_factory: Callable[[], BaseException] = infra
) -> None:
    for _ in range(n):
        await attempt(breaker, Target(exc_factory()))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> list[BreakerEvent]:
    return []


@pytest.fixture
def make(clock: FakeClock, events: list[BreakerEvent]) -> Callable[..., Breaker]:
    def _make(name: str = "engine:test", **policy: Any) -> Breaker:
        return Breaker(name, BreakerPolicy(**policy), clock=clock, listeners=[events.append])

    return _make


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    reset_breakers()
    yield
    reset_breakers()


class TestWhatCounts:
    @pytest.mark.parametrize(
        ("error", "counted_by"),
        [
            (InfrastructureError("infra"), "engine"),
            (EngineUnavailableError("no engine"), "engine"),
            (ProvisioningTimeoutError("cli hung"), "engine"),
            (EngineConnectionError("engine died"), "engine"),
            (RegistryUnavailableError("registry down"), "agent"),
            (StepTimeoutError("too slow", timeout_s=1.0), "agent"),
            (ProviderUnavailableError("429"), "llm"),
            (
                ExceptionGroup("task group", [ValueError("x"), EngineConnectionError("died")]),
                "engine",
            ),
            (StepFailedError("exit 2", step="s", exit_code=2), None),
            (InvalidInputError("bad input"), None),
            (InvalidSpecError("bad spec"), None),
            (CircuitOpenError("nested", breaker="agent:x", opened_at=0.0, probe_at=1.0), None),
            (AiopError("root"), None),
            (ValueError("a bug"), None),
            (RuntimeError("a bug"), None),
            (ExceptionGroup("task group", [ValueError("x")]), None),
        ],
        ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
    )
    @pytest.mark.parametrize("name", ["engine:test", "agent:test", "llm:test"])
    async def test_each_error_counts_against_the_one_kind_of_breaker_it_concerns(
        self, make: Callable[..., Breaker], error: Exception, counted_by: str | None, name: str
    ) -> None:
        breaker = make(name, fail_max=1)
        raised = await attempt(breaker, Target(error))
        assert raised is error  # the caller gets its own exception, unchanged
        counts = counted_by == name.partition(":")[0]
        assert breaker.state == ("open" if counts else "closed")

    async def test_step_failed_never_opens_the_circuit(self, make: Callable[..., Breaker]) -> None:
        breaker = make(fail_max=2)
        await fail_times(breaker, 20, step_failed)
        assert breaker.state == "closed"
        assert breaker.snapshot()["fail_counter"] == 0

    async def test_step_failed_proves_the_engine_works_and_resets_the_streak(
        self, make: Callable[..., Breaker]
    ) -> None:
        breaker = make(fail_max=2)
        await fail_times(breaker, 1)
        await fail_times(breaker, 1, step_failed)
        await fail_times(breaker, 1)
        assert breaker.state == "closed"
        assert breaker.snapshot()["fail_counter"] == 1

    async def test_other_errors_neither_count_nor_reset_the_streak(
        self, make: Callable[..., Breaker]
    ) -> None:
        breaker = make(fail_max=2)
        await fail_times(breaker, 1)
        await fail_times(breaker, 1, lambda: InvalidInputError("bad"))
        await fail_times(breaker, 1, lambda: ValueError("bug"))
        assert breaker.snapshot()["fail_counter"] == 1
        await fail_times(breaker, 1)
        assert breaker.state == "open"

    @pytest.mark.parametrize(
        "interrupt", [asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit]
    )
    async def test_cancellation_and_interrupts_never_count_and_pass_through(
        self, make: Callable[..., Breaker], interrupt: type[BaseException]
    ) -> None:
        breaker = make(fail_max=2)
        await fail_times(breaker, 1)
        for _ in range(5):
            error = interrupt()
            assert await attempt(breaker, Target(error)) is error
        assert breaker.state == "closed"
        assert breaker.snapshot()["fail_counter"] == 1  # neither counted nor reset

    @pytest.mark.parametrize("interrupt", [asyncio.CancelledError, KeyboardInterrupt])
    async def test_an_interrupted_probe_neither_closes_nor_reopens_and_frees_its_slot(
        self, make: Callable[..., Breaker], clock: FakeClock, interrupt: type[BaseException]
    ) -> None:
        breaker = make(fail_max=1, reset_timeout=10.0)
        await fail_times(breaker, 1)
        clock.advance(10.0)
        await attempt(breaker, Target(interrupt()))
        assert breaker.state == "half-open"
        ok = Target()
        assert await attempt(breaker, ok) is None
        assert ok.calls == 1
        assert breaker.snapshot()["state"] == "closed"

    async def test_cancelling_the_calling_task_is_not_a_failure(
        self, make: Callable[..., Breaker]
    ) -> None:
        breaker = make(fail_max=1)
        started = asyncio.Event()

        async def hangs() -> None:
            started.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(breaker.call(hangs))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.state == "closed"
        assert breaker.snapshot()["fail_counter"] == 0

    async def test_failures_raised_after_an_await_are_counted(
        self, make: Callable[..., Breaker]
    ) -> None:
        # pybreaker's call() would record the coroutine object as a success and never see this.
        breaker = make(fail_max=3)

        async def fails_later() -> None:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            raise EngineConnectionError("engine died mid-step")

        for _ in range(3):
            with pytest.raises(EngineConnectionError):
                await breaker.call(fails_later)
        assert breaker.state == "open"

    async def test_the_callers_traceback_shows_no_breaker_bookkeeping(
        self, make: Callable[..., Breaker]
    ) -> None:
        breaker = make(fail_max=1)
        raised = await attempt(breaker, Target(infra()))
        assert raised is not None
        frames = "".join(traceback.format_tb(raised.__traceback__))
        assert "pybreaker" not in frames
        assert "replay" not in frames
        assert raised.__context__ is None

    async def test_a_permit_counts_like_call_and_only_its_first_outcome(
        self, make: Callable[..., Breaker]
    ) -> None:
        breaker = make(fail_max=1)
        with pytest.raises(EngineUnavailableError):
            async with breaker.admit():
                raise infra()
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            breaker.admit()
        other = make("engine:other", fail_max=1)
        permit = other.admit()
        permit.record(None)
        permit.record(infra())  # a second outcome of the same call is not counted
        assert other.state == "closed" and other.snapshot()["fail_counter"] == 0

    async def test_a_permit_given_back_unused_counts_nothing_and_frees_its_probe_slot(
        self, make: Callable[..., Breaker], clock: FakeClock
    ) -> None:
        breaker = make(fail_max=1, reset_timeout=10.0)
        await fail_times(breaker, 1)
        clock.advance(10.0)
        probe = breaker.admit()
        assert isinstance(await attempt(breaker, Target()), CircuitOpenError)  # the slot is taken
        probe.release()
        assert breaker.state == "half-open" and breaker.snapshot()["probes_in_flight"] == 0
        assert await attempt(breaker, Target()) is None
        assert breaker.state == "closed"


class TestAdmitAll:
    async def test_one_decision_over_several_breakers_each_counting_its_own_errors(
        self, make: Callable[..., Breaker]
    ) -> None:
        engine, provider = make("engine:e", fail_max=1), make("llm:p", fail_max=1)
        with pytest.raises(ProviderUnavailableError):
            async with admit_all([engine, provider]):
                raise ProviderUnavailableError("429")
        assert (engine.state, provider.state) == ("closed", "open")

    async def test_a_refusal_gives_the_others_permits_back(
        self, make: Callable[..., Breaker], clock: FakeClock
    ) -> None:
        engine, provider = make("engine:e", fail_max=1, reset_timeout=10.0), make("llm:p")
        await fail_times(engine, 1)
        clock.advance(10.0)  # the engine may probe: admit_all takes its probe slot first...
        blocked = make("llm:blocked", fail_max=1)
        await fail_times(blocked, 1, lambda: ProviderUnavailableError("429"))
        with pytest.raises(CircuitOpenError) as info:
            admit_all([engine, blocked, provider])
        assert info.value.breaker == "llm:blocked"
        assert engine.snapshot()["probes_in_flight"] == 0  # ...and gave it back
        assert provider.snapshot()["probes_in_flight"] == 0


class TestOpen:
    async def test_opens_after_fail_max_consecutive_infrastructure_failures(
        self, make: Callable[..., Breaker]
    ) -> None:
        breaker = make(fail_max=3)
        await fail_times(breaker, 2)
        assert breaker.state == "closed"
        await fail_times(breaker, 1)
        assert breaker.snapshot()["state"] == "open"

    async def test_a_success_resets_the_consecutive_count(
        self, make: Callable[..., Breaker]
    ) -> None:
        breaker = make(fail_max=2)
        await fail_times(breaker, 1)
        await attempt(breaker, Target())
        await fail_times(breaker, 1)
        assert breaker.state == "closed"

    async def test_open_fails_fast_without_calling_fn_and_names_breaker_and_times(
        self, make: Callable[..., Breaker], clock: FakeClock
    ) -> None:
        breaker = make("engine:local", fail_max=2, reset_timeout=30.0)
        await fail_times(breaker, 2)
        clock.advance(5.0)
        fn = Target()
        raised = await attempt(breaker, fn)
        assert fn.calls == 0
        assert isinstance(raised, CircuitOpenError)
        assert raised.breaker == "engine:local"
        assert raised.opened_at == START
        assert raised.probe_at == START + 30.0
        message = str(raised)
        assert "'engine:local' is open since" in message
        assert "after 2 infrastructure failures" in message
        assert "EngineUnavailableError: no engine reachable" in message
        assert "next probe at" in message

    async def test_stays_open_until_reset_timeout_has_passed(
        self, make: Callable[..., Breaker], clock: FakeClock
    ) -> None:
        breaker = make(fail_max=1, reset_timeout=10.0)
        await fail_times(breaker, 1)
        clock.advance(9.999)
        assert isinstance(await attempt(breaker, Target()), CircuitOpenError)
        assert breaker.state == "open"

    async def test_a_call_admitted_before_the_circuit_opened_cannot_close_it(
        self, make: Callable[..., Breaker]
    ) -> None:
        breaker = make(fail_max=1)
        release = asyncio.Event()

        async def slow_success() -> str:
            await release.wait()
            return "late"

        slow = asyncio.create_task(breaker.call(slow_success))
        await asyncio.sleep(0)
        await fail_times(breaker, 1)
        assert breaker.state == "open"
        release.set()
        assert await slow == "late"
        assert breaker.state == "open"


class TestHalfOpen:
    async def test_half_opens_after_reset_timeout_and_a_probe_success_closes(
        self, make: Callable[..., Breaker], clock: FakeClock
    ) -> None:
        breaker = make(fail_max=1, reset_timeout=10.0)
        await fail_times(breaker, 1)
        clock.advance(10.0)
        probe = Target()
        assert await attempt(breaker, probe) is None
        assert probe.calls == 1
        assert breaker.state == "closed"

    @pytest.mark.parametrize("max_calls", [1, 2])
    async def test_at_most_half_open_max_calls_probes_run_at_once(
        self, make: Callable[..., Breaker], clock: FakeClock, max_calls: int
    ) -> None:
        breaker = make(fail_max=1, reset_timeout=10.0, half_open_max_calls=max_calls)
        await fail_times(breaker, 1)
        clock.advance(10.0)
        release = asyncio.Event()

        async def slow_probe() -> str:
            await release.wait()
            return "probed"

        probes = [asyncio.create_task(breaker.call(slow_probe)) for _ in range(max_calls)]
        await asyncio.sleep(0)
        assert breaker.state == "half-open"
        extra = Target()
        rejected = await attempt(breaker, extra)
        assert isinstance(rejected, CircuitOpenError)
        assert extra.calls == 0
        assert "half-open" in str(rejected)
        assert rejected.opened_at == START
        release.set()
        assert await asyncio.gather(*probes) == ["probed"] * max_calls
        assert breaker.snapshot()["state"] == "closed"

    async def test_success_threshold_consecutive_probe_successes_close_it(
        self, make: Callable[..., Breaker], clock: FakeClock
    ) -> None:
        breaker = make(fail_max=1, reset_timeout=10.0, success_threshold=3)
        await fail_times(breaker, 1)
        clock.advance(10.0)
        for _ in range(2):
            assert await attempt(breaker, Target()) is None
            assert breaker.state == "half-open"
        assert await attempt(breaker, Target()) is None
        assert breaker.state == "closed"

    async def test_a_step_failure_is_a_successful_probe(
        self, make: Callable[..., Breaker], clock: FakeClock
    ) -> None:
        breaker = make(fail_max=1, reset_timeout=10.0)
        await fail_times(breaker, 1)
        clock.advance(10.0)
        await fail_times(breaker, 1, step_failed)
        assert breaker.state == "closed"

    async def test_a_failed_probe_reopens_with_a_new_opened_at(
        self, make: Callable[..., Breaker], clock: FakeClock
    ) -> None:
        breaker = make(fail_max=1, reset_timeout=10.0, success_threshold=2)
        await fail_times(breaker, 1)
        clock.advance(10.0)
        assert await attempt(breaker, Target()) is None  # one success of two
        clock.advance(1.0)
        await fail_times(breaker, 1, lambda: EngineConnectionError("still broken"))
        assert breaker.state == "open"
        raised = await attempt(breaker, Target())
        assert isinstance(raised, CircuitOpenError)
        assert raised.opened_at == START + 11.0
        assert raised.probe_at == START + 21.0
        assert "EngineConnectionError: still broken" in str(raised)


class TestListeners:
    async def test_listeners_receive_each_transition_once_with_its_payload(
        self, make: Callable[..., Breaker], clock: FakeClock, events: list[BreakerEvent]
    ) -> None:
        breaker = make("engine:coder", fail_max=2, reset_timeout=10.0)
        await fail_times(breaker, 2)
        await attempt(breaker, Target())  # rejected: no event
        clock.advance(10.0)
        await attempt(breaker, Target())
        assert [e.name for e in events] == [
            "aiop.breaker.opened",
            "aiop.breaker.half-opened",
            "aiop.breaker.closed",
        ]
        opened, half, closed = events
        assert opened == BreakerEvent(
            name="aiop.breaker.opened",
            breaker="engine:coder",
            resource_id="aiop.breaker.engine:coder",
            old_state="closed",
            new_state="open",
            fail_counter=2,
            success_count=0,
            last_error="EngineUnavailableError: no engine reachable",
            at=START,
            opened_at=START,
            probe_at=START + 10.0,
        )
        assert (half.old_state, half.new_state, half.at) == ("open", "half-open", START + 10.0)
        assert (closed.old_state, closed.new_state) == ("half-open", "closed")
        assert (closed.fail_counter, closed.success_count) == (0, 1)

    async def test_a_failing_listener_is_logged_and_never_breaks_the_call(
        self, make: Callable[..., Breaker], caplog: pytest.LogCaptureFixture
    ) -> None:
        breaker = make(fail_max=1)

        def broken(event: BreakerEvent) -> None:
            raise RuntimeError("listener bug")

        breaker.add_listener(broken)
        with caplog.at_level(logging.ERROR, logger="aiop.breaker"):
            raised = await attempt(breaker, Target(infra()))
        assert isinstance(raised, EngineUnavailableError)
        assert breaker.state == "open"
        assert any("listener" in r.getMessage() for r in caplog.records)

    async def test_listeners_may_read_the_breaker_without_deadlock(
        self, make: Callable[..., Breaker]
    ) -> None:
        breaker = make(fail_max=1)
        seen: list[str] = []
        breaker.add_listener(lambda event: seen.append(breaker.snapshot()["state"]))
        await fail_times(breaker, 1)
        assert seen == ["open"]

    async def test_add_listener_twice_calls_it_once(self, make: Callable[..., Breaker]) -> None:
        breaker = make(fail_max=1)
        got: list[BreakerEvent] = []
        breaker.add_listener(got.append)
        breaker.add_listener(got.append)
        await fail_times(breaker, 1)
        assert len(got) == 1

    async def test_every_transition_is_logged_on_aiop_breaker(
        self, make: Callable[..., Breaker], clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        breaker = make("engine:local", fail_max=1, reset_timeout=10.0)
        with caplog.at_level(logging.INFO, logger="aiop.breaker"):
            await fail_times(breaker, 1)
            clock.advance(10.0)
            await attempt(breaker, Target())
        messages = [r.getMessage() for r in caplog.records if r.name == "aiop.breaker"]
        assert len(messages) == 3
        assert "opened" in messages[0] and "engine:local" in messages[0]
        assert "half-open" in messages[1]
        assert "closed" in messages[2]


class TestConcurrency:
    async def test_eight_half_second_calls_through_a_closed_breaker_finish_in_under_a_second(
        self,
    ) -> None:
        breaker = Breaker("engine:concurrent", BreakerPolicy())

        async def half_second() -> float:
            await asyncio.sleep(0.5)
            return 0.5

        started = time.perf_counter()
        results = await asyncio.gather(*(breaker.call(half_second) for _ in range(8)))
        elapsed = time.perf_counter() - started
        assert results == [0.5] * 8
        assert elapsed < 1.0, f"8 guarded calls took {elapsed:.2f} s: they ran one at a time"
        assert breaker.state == "closed"

    async def test_concurrent_failures_open_it_exactly_once(
        self, make: Callable[..., Breaker], events: list[BreakerEvent]
    ) -> None:
        breaker = make(fail_max=3)
        raised = await asyncio.gather(*(attempt(breaker, Target(infra())) for _ in range(10)))
        assert all(isinstance(e, EngineUnavailableError) for e in raised)
        assert breaker.state == "open"
        assert [e.name for e in events] == ["aiop.breaker.opened"]


class TestSnapshot:
    async def test_snapshot_is_plain_data_for_display(
        self, make: Callable[..., Breaker], clock: FakeClock
    ) -> None:
        breaker = make("engine:local", fail_max=1, reset_timeout=30.0)
        assert breaker.snapshot()["state"] == "closed"
        await fail_times(breaker, 1)
        snap = breaker.snapshot()
        assert snap == {
            "name": "engine:local",
            "resource_id": "aiop.breaker.engine:local",
            "state": "open",
            "fail_counter": 1,
            "success_counter": 0,
            "probes_in_flight": 0,
            "opened_at": START,
            "probe_at": START + 30.0,
            "last_error": "EngineUnavailableError: no engine reachable",
            "fail_max": 1,
            "reset_timeout": 30.0,
            "success_threshold": 1,
            "half_open_max_calls": 1,
            "storage": "memory",
            "redis_url": None,
        }


class TestPolicy:
    def test_defaults_keep_pybreakers_names(self) -> None:
        policy = BreakerPolicy()
        assert (policy.fail_max, policy.reset_timeout) == (5, 30.0)
        assert (policy.success_threshold, policy.half_open_max_calls) == (1, 1)

    def test_is_frozen_and_keyword_only(self) -> None:
        policy = BreakerPolicy()
        with pytest.raises(AttributeError):
            policy.fail_max = 3  # type: ignore[misc]
        with pytest.raises(TypeError):
            BreakerPolicy(3)  # type: ignore[call-arg]

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"fail_max": 0},
            {"fail_max": True},
            {"reset_timeout": 0},
            {"reset_timeout": float("inf")},
            {"success_threshold": 0},
            {"half_open_max_calls": 0},
        ],
        ids=str,
    )
    def test_out_of_range_values_are_invalid_input(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(InvalidInputError, match=next(iter(kwargs))):
            BreakerPolicy(**kwargs)


class TestRegistry:
    def test_returns_one_shared_breaker_per_name(self) -> None:
        assert get_breaker("engine:local") is get_breaker("engine:local")
        assert get_breaker("engine:local") is not get_breaker("agent:coder")

    def test_creation_is_thread_safe(self) -> None:
        barrier = threading.Barrier(16)
        got: list[Breaker] = []

        def grab() -> None:
            barrier.wait()
            got.append(get_breaker("engine:dagger:host-a"))

        threads = [threading.Thread(target=grab) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(got) == 16
        assert all(b is got[0] for b in got)

    def test_new_breakers_take_the_given_policy_and_keep_state_in_process(self) -> None:
        breaker = get_breaker("agent:env", Settings(breaker={"fail_max": 2}).breaker_policy())
        assert breaker.policy.fail_max == 2
        assert breaker.storage == "memory"
        assert get_breaker("agent:defaults").policy == BreakerPolicy()

    def test_a_different_policy_for_an_existing_breaker_is_invalid_input(self) -> None:
        get_breaker("engine:local", BreakerPolicy(fail_max=3))
        assert get_breaker("engine:local", BreakerPolicy(fail_max=3)).policy.fail_max == 3
        with pytest.raises(InvalidInputError, match="already exists"):
            get_breaker("engine:local", BreakerPolicy(fail_max=4))

    def test_reset_breakers_forgets_them(self) -> None:
        first = get_breaker("engine:local")
        reset_breakers()
        assert get_breaker("engine:local") is not first

    def test_an_empty_name_is_invalid_input(self) -> None:
        with pytest.raises(InvalidInputError, match="name"):
            get_breaker(" ")
