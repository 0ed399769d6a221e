"""Benchmark 3, concurrency: 8 concurrent 0.5 s steps through one breaker, against one.

Measured twice, because the claim is the breaker's but users feel the whole step:

* **breaker**: ``Breaker.call`` on ``asyncio.sleep(0.5)``, 8 at once (``asyncio.gather``) against
  1. pybreaker's own ``call()`` holds its lock for the whole call (8 x 0.5 s = 4 s, ratio 8); the
  platform's breaker must not.
* **run_step**: 8 concurrent ``run_step`` tasks of ``python -c "import time; time.sleep(0.5)"``
  (all through the ``engine:local`` breaker, each a new spec) against 1, in one flow run. Here the
  8 interpreters start on 2 cores and 8 task runs are recorded at once, so some added time is
  expected that has nothing to do with the breaker; the same 8 processes started bare
  (``asyncio.create_subprocess_exec``, no Prefect, no breaker) show how much.

Each is repeated (:attr:`~flows.benchmarks._context.BenchContext.repeats`) and the medians
compared. Target: ratio at most 1.3.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from prefect import flow

from adapters.breakers.breaker import Breaker, BreakerPolicy
from flows.benchmarks._context import BenchContext, log
from flows.benchmarks._report import Outcome, Row
from flows.benchmarks.step_overhead import run_subprocess, trivial_spec
from flows.runtime.step_task import run_step

__all__ = ["CONCURRENT", "SLEEP_S", "TARGET_RATIO", "run"]

CONCURRENT = 8
SLEEP_S = 0.5
TARGET_RATIO = 1.3
_SLEEPER = ("python", "-c", f"import time; time.sleep({SLEEP_S})")


async def _timed(n: int, one: Callable[[int], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


async def breaker_times(repeats: int) -> dict[str, list[float]]:
    """Seconds for 1 and for :data:`CONCURRENT` sleeps through one fresh breaker, ``repeats`` each."""
    breaker = Breaker("bench:concurrency", BreakerPolicy())

    async def one(_: int) -> None:
        await breaker.call(lambda: asyncio.sleep(SLEEP_S))

    times: dict[str, list[float]] = {"one": [], "concurrent": []}
    for _ in range(repeats):
        times["one"].append(await _timed(1, one))
        times["concurrent"].append(await _timed(CONCURRENT, one))
    return times


@flow(name="bench-concurrency")
async def run_step_times(repeats: int) -> dict[str, list[float]]:
    """Seconds for 1 and for :data:`CONCURRENT` concurrent 0.5 s steps: ``run_step`` tasks and bare
    subprocesses (keys ``bare_*``), taking turns."""
    nonce = uuid.uuid4().hex[:12]
    calls = iter(range(1_000_000))

    async def one(_: int) -> None:
        result = await run_step(trivial_spec(nonce, next(calls), _SLEEPER), "local")
        if not result.ok:
            raise RuntimeError(f"the sleeping step exited with {result.exit_code}")

    async def bare(_: int) -> None:
        await run_subprocess([sys.executable, *_SLEEPER[1:]])

    await _timed(1, one)  # warm-up: the first task run of a flow pays one-off costs
    times: dict[str, list[float]] = {
        "one": [],
        "concurrent": [],
        "bare_one": [],
        "bare_concurrent": [],
    }
    for _ in range(repeats):
        times["one"].append(await _timed(1, one))
        times["concurrent"].append(await _timed(CONCURRENT, one))
        times["bare_one"].append(await _timed(1, bare))
        times["bare_concurrent"].append(await _timed(CONCURRENT, bare))
    return times


def _summary(times: dict[str, list[float]], prefix: str = "") -> dict[str, Any]:
    one = statistics.median(times[f"{prefix}one"])
    many = statistics.median(times[f"{prefix}concurrent"])
    ratio = many / one
    return {
        "one_s": one,
        "concurrent_s": many,
        "ratio": ratio,
        "met": ratio <= TARGET_RATIO,
        "raw_s": times,
    }


def run(ctx: BenchContext) -> Outcome:
    """Run the benchmark; see the module docstring."""
    log(f"concurrency: {CONCURRENT} x {SLEEP_S:g} s against 1, {ctx.repeats} times each")
    pure = _summary(asyncio.run(breaker_times(ctx.repeats)))
    step_times = asyncio.run(run_step_times(ctx.repeats))
    steps = _summary(step_times)
    bare = {**_summary(step_times, "bare_"), "met": None}  # no target: shows the machine's share
    data = {
        "concurrent": CONCURRENT,
        "sleep_s": SLEEP_S,
        "repeats": ctx.repeats,
        "target_ratio": TARGET_RATIO,
        "breaker": pure,
        "run_step": steps,
        "bare_subprocess": bare,
    }
    rows = [
        Row(
            f"concurrency: {CONCURRENT} x {SLEEP_S:g} s through Breaker.call",
            f"{pure['concurrent_s']:.3f} s",
            f"{pure['one_s']:.3f} s (1 call)",
            f"{pure['ratio']:.2f}x",
            f"<= {TARGET_RATIO:g}x",
            pure["met"],
        ),
        Row(
            f"  {CONCURRENT} x {SLEEP_S:g} s run_step tasks (end to end)",
            f"{steps['concurrent_s']:.3f} s",
            f"{steps['one_s']:.3f} s (1 step)",
            f"{steps['ratio']:.2f}x",
            f"<= {TARGET_RATIO:g}x",
            steps["met"],
        ),
        Row(
            f"  {CONCURRENT} x {SLEEP_S:g} s bare subprocesses (no Prefect)",
            f"{bare['concurrent_s']:.3f} s",
            f"{bare['one_s']:.3f} s (1 process)",
            f"{bare['ratio']:.2f}x",
        ),
    ]
    return Outcome(data, rows)
