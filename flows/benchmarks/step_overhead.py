"""Benchmark 2, step overhead: what ``run_step`` adds to a trivial command.

Four ways of running ``python -c pass`` (the interpreter that runs the benchmark), timed call by
call inside one flow run against the Prefect server, the kinds taking turns so that noise on the
shared machine hits them alike:

* ``subprocess``: ``asyncio.create_subprocess_exec`` and ``communicate()``, no Prefect;
* ``local_runner``: :class:`~adapters.local_runner.LocalRunner` alone (scratch folder, minimal
  environment, line pumps), no Prefect;
* ``prefect_task``: a bare ``@task`` running the same subprocess;
* ``run_step``: the real task with its defaults (retries, breaker, chaos hook, run logger with
  every output line, cache key and persisted result), each call a new spec (a different
  environment value) so that none is answered from the cache;
* ``run_step_no_cache``: the same function as a task without the cache key and without persisted
  results (``persist_result=False``, ``NO_CACHE``), to show what caching costs per step.

The claims: the median ``run_step`` minus the median bare subprocess (target: at most 15 ms), and
minus the median bare Prefect task (at most 10 ms). Also measured: each step program's start, a
fresh interpreter importing what the step imports (its command line, its module, DuckDB).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from prefect import Task, flow, task
from prefect.cache_policies import NO_CACHE

from adapters import DEFAULT_RETRY_POLICY, StepResult, StepSpec
from adapters.local_runner import LocalRunner
from flows.benchmarks._context import BenchContext, log
from flows.benchmarks._measure import median_ms
from flows.benchmarks._report import Outcome, Row
from flows.runtime.retries import task_retry_options
from flows.runtime.step_task import run_step, run_step_task

__all__ = ["KINDS", "TARGET_ADDED_MS", "TARGET_OVER_TASK_MS", "program_starts", "run"]

TARGET_ADDED_MS = 15.0
#: run_step over a bare Prefect task running the same subprocess (issue 25, goal 4).
TARGET_OVER_TASK_MS = 10.0
KINDS = ("subprocess", "local_runner", "prefect_task", "run_step_no_cache", "run_step")
_COMMAND = ("python", "-c", "pass")


async def run_subprocess(args: list[str]) -> int:
    """Run ``args`` with asyncio, stdout and stderr piped and read; return the exit code."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await proc.communicate()
    return int(proc.returncode or 0)


@task(name="bare-subprocess")
async def bare_task(args: list[str], call: int) -> int:
    """A bare Prefect task running ``args`` (``call`` only makes each run's inputs distinct)."""
    return await run_subprocess(args)


def trivial_spec(nonce: str, call: int, args: tuple[str, ...] = _COMMAND) -> StepSpec:
    """A spec of ``args`` that no earlier call has run (its environment names the call)."""
    return StepSpec(
        name="bench-trivial",
        image="python:3.12-slim",
        args=list(args),
        env={"BENCH_CALL": f"{nonce}-{call}"},
    )


#: ``run_step`` without its cache key function and persisted results (``with_options`` cannot drop
#: a cache key function, so the same function is wrapped again).
run_step_no_cache: Task[[StepSpec, str | None], Coroutine[Any, Any, StepResult]] = Task(
    run_step_task.fn,
    name="run_step-no-cache",
    task_run_name="{spec.name}",
    **task_retry_options(DEFAULT_RETRY_POLICY),
    cache_policy=NO_CACHE,
    persist_result=False,
)


@flow(name="bench-step-overhead")
async def overhead_flow(samples: int, warmup: int) -> dict[str, list[float]]:
    """Time each kind ``samples`` times (after ``warmup`` untimed rounds), taking turns."""
    args = [sys.executable, *_COMMAND[1:]]
    runner = LocalRunner()
    nonce = uuid.uuid4().hex[:12]
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}

    async def call(kind: str, i: int) -> None:
        if kind == "subprocess":
            code = await run_subprocess(args)
        elif kind == "local_runner":
            code = (await runner.run(trivial_spec(nonce, -i - 1))).exit_code
        elif kind == "prefect_task":
            code = await bare_task(args, i)
        elif kind == "run_step_no_cache":
            code = (await run_step_no_cache(trivial_spec(nonce, -i - 1_000_000), "local")).exit_code
        else:
            result = await run_step(trivial_spec(nonce, i), "local")
            code = result.exit_code
        if code != 0:
            raise RuntimeError(f"{kind}: the trivial command exited with {code}")

    for i in range(warmup + samples):
        order = KINDS[i % len(KINDS) :] + KINDS[: i % len(KINDS)]
        for kind in order:
            started = time.perf_counter()
            await call(kind, i)
            if i >= warmup:
                times[kind].append(time.perf_counter() - started)
    return times


def run(ctx: BenchContext) -> Outcome:
    """Run the benchmark; see the module docstring."""
    log(f"step overhead: {ctx.samples} timed calls of each of {', '.join(KINDS)}")
    times = asyncio.run(overhead_flow(ctx.samples, ctx.warmup))
    medians = {kind: median_ms(values) for kind, values in times.items()}
    added = medians["run_step"] - medians["subprocess"]
    over_task = medians["run_step"] - medians["prefect_task"]
    starts = program_starts(5 if ctx.quick else 15)
    data: dict[str, Any] = {
        "command": list(_COMMAND),
        "samples": ctx.samples,
        "median_ms": medians,
        "added_ms": {kind: medians[kind] - medians["subprocess"] for kind in KINDS},
        "target_added_ms": TARGET_ADDED_MS,
        "met": added <= TARGET_ADDED_MS,
        "raw_s": times,
        "over_task_ms": over_task,
        "target_over_task_ms": TARGET_OVER_TASK_MS,
        "program_start_ms": starts,
    }
    rows = [
        Row(
            "step overhead: run_step vs bare subprocess",
            f"{medians['run_step']:.1f} ms/step",
            f"{medians['subprocess']:.1f} ms",
            f"{added:+.1f} ms",
            f"<= +{TARGET_ADDED_MS:g} ms",
            added <= TARGET_ADDED_MS,
        ),
        Row(
            "  bare Prefect task vs bare subprocess",
            f"{medians['prefect_task']:.1f} ms/step",
            f"{medians['subprocess']:.1f} ms",
            f"{medians['prefect_task'] - medians['subprocess']:+.1f} ms",
        ),
        Row(
            "  run_step vs bare Prefect task",
            f"{medians['run_step']:.1f} ms/step",
            f"{medians['prefect_task']:.1f} ms",
            f"{over_task:+.1f} ms",
            f"<= +{TARGET_OVER_TASK_MS:g} ms",
            over_task <= TARGET_OVER_TASK_MS,
        ),
        Row(
            "  run_step vs run_step without cache/persistence",
            f"{medians['run_step']:.1f} ms/step",
            f"{medians['run_step_no_cache']:.1f} ms",
            f"{medians['run_step'] - medians['run_step_no_cache']:+.1f} ms",
        ),
        Row(
            "  LocalRunner alone vs bare subprocess",
            f"{medians['local_runner']:.1f} ms/step",
            f"{medians['subprocess']:.1f} ms",
            f"{medians['local_runner'] - medians['subprocess']:+.1f} ms",
        ),
        *(
            Row(
                f"  step program start: {name}",
                f"{ms:.0f} ms",
                f"{starts['python']:.0f} ms (python -c pass)",
                f"{ms - starts['python']:+.0f} ms",
            )
            for name, ms in starts.items()
            if name != "python"
        ),
    ]
    return Outcome(data, rows)


#: What a step program imports before its work: the command line, the step's module and, for
#: the steps that read or write data, DuckDB's extension (:mod:`flows.steps._db`, imported where
#: the work starts). ``ingest`` of a given file and ``report`` never import DuckDB.
_STARTS = {
    "python": "pass",
    "command line": "import flows.steps.__main__",
    "ingest": "import flows.steps.__main__, flows.steps.ingest",
    **{
        name: f"import flows.steps.__main__, flows.steps.{name}, flows.steps._db"
        for name in ("validate", "transform", "aggregate")
    },
    "report": "import flows.steps.__main__, flows.steps.report",
}


def program_starts(samples: int) -> dict[str, float]:
    """Median milliseconds of a fresh interpreter that imports what each step program imports
    (``python`` alone: the interpreter's own start), the kinds taking turns."""
    import subprocess

    times: dict[str, list[float]] = {name: [] for name in _STARTS}
    for _ in range(samples):
        for name, code in _STARTS.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times[name].append(time.perf_counter() - started)
    return {name: median_ms(values) for name, values in times.items()}
