"""Benchmark 4, fast failure: how soon a dead engine opens the breaker, and what a rejection costs.

The engine "dies" through the chaos plan ``kind=engine-down,seconds=3600`` (every run attempt
raises :class:`~adapters.errors.EngineUnavailableError`, as the Dagger runner does when no engine
answers) and the breaker has ``BreakerPolicy(fail_max=3)``. Measured twice:

* **breaker**: a fresh :class:`~adapters.breakers.breaker.Breaker` guarding
  ``ChaosRunner(LocalRunner()).run``; from the engine's death (just before the first call) to the
  breaker being open, in calls and milliseconds; then the time of each rejected call
  (:class:`~adapters.errors.CircuitOpenError` without touching the runner). This is the breaker's
  claim: target at most 5 ms per rejected call.
* **step**: the same through :func:`~flows.runtime.step_task.execute_step` (what the agent manager, and so
  the pipeline, calls) inside a flow run, on the process-wide ``engine:local`` breaker, with a
  retry policy of one attempt (with retries left, a step deliberately waits for the probe time of
  an open circuit). ``execute_step`` asks the breaker before creating the step's task run, so a
  rejected step costs the breaker's check, a log line and an event. Target: at most 5 ms.
* **run_step called directly** (with a one-attempt retry policy): a task's body only runs
  inside its task run, so here the rejection comes after the task run was created, failed and
  recorded on the server; shown for comparison.

Afterwards the plan is uninstalled and the process-wide breakers forgotten, so the benchmarks that
follow start with a closed ``engine:local`` breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State

from adapters import StepResult
from adapters.breakers.breaker import Breaker, BreakerPolicy, get_breaker, reset_breakers
from adapters.chaos import ChaosRunner, parse_plan
from adapters.errors import CircuitOpenError, EngineUnavailableError
from adapters.local_runner import LocalRunner
from adapters.retry_policy import RetryPolicy
from adapters.selection import resolve_runner
from flows.benchmarks._context import BenchContext, log
from flows.benchmarks._measure import median_ms
from flows.benchmarks._report import Outcome, Row
from flows.benchmarks.step_overhead import trivial_spec
from flows.runtime.step_task import execute_step, run_step

__all__ = ["PLAN", "POLICY", "TARGET_REJECT_MS", "run"]

PLAN = "kind=engine-down,seconds=3600"
POLICY = BreakerPolicy(fail_max=3)
TARGET_REJECT_MS = 5.0
_MAX_CALLS_TO_OPEN = 50
_ONE_ATTEMPT = RetryPolicy(attempts=1)


async def breaker_only(samples: int) -> dict[str, Any]:
    """Calls and seconds from the engine's death to an open breaker, then per rejected call."""
    breaker = Breaker("bench:engine-down", POLICY)
    runner = ChaosRunner(LocalRunner(), parse_plan(PLAN))
    spec = trivial_spec("fast-failure", 0)
    died = time.perf_counter()
    calls = 0
    while breaker.state != "open" and calls < _MAX_CALLS_TO_OPEN:
        calls += 1
        with contextlib.suppress(EngineUnavailableError):
            await breaker.call(lambda: runner.run(spec))
    to_open = time.perf_counter() - died
    rejected: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        try:
            await breaker.call(lambda: runner.run(spec))
        except CircuitOpenError:
            rejected.append(time.perf_counter() - started)
        else:
            raise RuntimeError("the breaker let a call through while the engine was down")
    return {"calls_to_open": calls, "to_open_s": to_open, "rejected_s": rejected}


@flow(name="bench-fast-failure")
async def through_steps(samples: int, direct: bool) -> dict[str, Any]:
    """The same as :func:`breaker_only`, each call a step: through ``execute_step`` with one
    attempt, or (``direct``) a ``run_step`` task run with ``retries=0``."""
    runner = resolve_runner("local", plan=parse_plan(PLAN))  # the engine is "down" for these steps
    breaker = get_breaker("engine:local", POLICY)
    nonce = uuid.uuid4().hex[:12]
    calls = 0
    errors: list[str] = []

    async def attempt() -> BaseException | None:
        spec = trivial_spec(nonce, calls)
        if not direct:
            return (await execute_step(spec, "local", retry=_ONE_ATTEMPT, runner=runner)).error
        state: State[StepResult] = await run_step(
            spec, "local", runner=runner, retry=_ONE_ATTEMPT, return_state=True
        )
        if not state.is_failed():
            return None
        if isinstance(state.data, BaseException):
            return state.data
        loaded = await state.aresult(raise_on_failure=False)
        return loaded if isinstance(loaded, BaseException) else None

    died = time.perf_counter()
    while breaker.state != "open" and calls < _MAX_CALLS_TO_OPEN:
        calls += 1
        errors.append(type(await attempt()).__name__)
    to_open = time.perf_counter() - died
    rejected: list[float] = []
    for _ in range(samples):
        calls += 1
        started = time.perf_counter()
        exc = await attempt()
        elapsed = time.perf_counter() - started
        if not isinstance(exc, CircuitOpenError):
            raise RuntimeError(f"expected a rejection by the open breaker, got {exc!r}")
        rejected.append(elapsed)
    return {
        "calls_to_open": len(errors),
        "errors_before_open": errors,
        "to_open_s": to_open,
        "rejected_s": rejected,
    }


def _summary(raw: dict[str, Any]) -> dict[str, Any]:
    reject_ms = median_ms(raw["rejected_s"])
    return {
        **{k: v for k, v in raw.items() if k != "rejected_s"},
        "to_open_ms": raw["to_open_s"] * 1000.0,
        "median_reject_ms": reject_ms,
        "met": reject_ms <= TARGET_REJECT_MS,
        "raw_rejected_s": raw["rejected_s"],
    }


def run(ctx: BenchContext) -> Outcome:
    """Run the benchmark; see the module docstring."""
    log(f"fast failure: engine down, {POLICY.fail_max} failures to open, {ctx.samples} rejections")
    try:
        reset_breakers()
        pure = _summary(asyncio.run(breaker_only(ctx.samples)))
        steps = _summary(asyncio.run(through_steps(ctx.samples, direct=False)))
        reset_breakers()
        direct = _summary(asyncio.run(through_steps(ctx.samples, direct=True)))
    finally:
        reset_breakers()
    data = {
        "plan": PLAN,
        "fail_max": POLICY.fail_max,
        "samples": ctx.samples,
        "target_reject_ms": TARGET_REJECT_MS,
        "breaker": pure,
        "step": steps,
        "run_step": direct,
    }
    rows = [
        Row(
            "fast failure: rejected call, Breaker.call",
            f"{pure['median_reject_ms']:.3f} ms/call",
            "",
            "",
            f"<= {TARGET_REJECT_MS:g} ms",
            pure["met"],
        ),
        Row(
            "  rejected step, execute_step (1 attempt)",
            f"{steps['median_reject_ms']:.2f} ms/step",
            "",
            "",
            f"<= {TARGET_REJECT_MS:g} ms",
            steps["met"],
        ),
        Row(
            "  rejected step, run_step called directly",
            f"{direct['median_reject_ms']:.1f} ms/step",
            "(task run first)",
        ),
        Row(
            "  engine death -> breaker open, Breaker.call",
            f"{pure['to_open_ms']:.2f} ms",
            f"{pure['calls_to_open']} calls",
        ),
        Row(
            "  engine death -> breaker open, execute_step",
            f"{steps['to_open_ms']:.1f} ms",
            f"{steps['calls_to_open']} steps",
        ),
    ]
    return Outcome(data, rows)
