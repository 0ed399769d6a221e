"""Benchmark 10, tracing overhead: what one trace per run costs a step, off and on.

A tracer provider can be installed once per process and never removed, so each side runs in a
child process of its own, through the code path users run: the settings read from the
environment, :func:`adapters.tracing.configure`, then a flow that runs ``N`` distinct trivial
steps one after another with :func:`flows.runtime.step_task.execute_step` on the local runner (the step
span, Prefect's task-run span, the attempt span, ``TRACEPARENT`` for the step process). Each child
times every step (``time.perf_counter`` around ``execute_step``) and prints the times.

* **off**: nothing set, as a user without a collector runs (no provider, no exporter imported);
* **on**: ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a loopback receiver in this process that
  decodes every export (:mod:`flows.benchmarks._otlp`), so encoding and HTTP are paid for real.

Rounds alternate the order (off-on, on-off, ...) so that the shared machine's load hits both
alike; the claim is the difference of the medians over every step of every round (target: at most
:data:`TARGET_ADDED_MS`), and the per-call cost of the platform's tracing helpers while off is
measured in this process, which has no provider (target: a few microseconds, nothing measurable
against a step).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import timeit
import uuid
from pathlib import Path
from typing import Any

from adapters.settings import load_settings
from flows.benchmarks._context import BenchContext, log
from flows.benchmarks._measure import median_ms
from flows.benchmarks._otlp import OtlpReceiver
from flows.benchmarks._report import Outcome, Row

__all__ = ["TARGET_ADDED_MS", "TARGET_OFF_US", "main", "run"]

#: The most tracing may add to a step, on against off (milliseconds, medians).
TARGET_ADDED_MS = 2.0
#: The most the tracing helpers may cost a step while tracing is off (microseconds).
TARGET_OFF_US = 50.0


def _child_env(base: dict[str, str], endpoint: str | None) -> dict[str, str]:
    """``base`` with the settings of this benchmark's process, and tracing on when ``endpoint``
    is given (a long exit flush: every span must arrive to be counted)."""
    settings = load_settings()
    if endpoint is None:
        return settings.environment_for_child(base)
    return settings.environment_for_child(
        base, otel_exporter_otlp_endpoint=endpoint, trace_flush_timeout_s=30.0
    )


def _side(steps: int, endpoint: str | None, scratch: Path) -> list[float]:
    """One child process: ``steps`` step times in seconds (``endpoint``: traced)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.benchmarks.tracing",
            "--child",
            str(steps),
            "--scratch",
            str(scratch),
        ],
        env=_child_env(dict(os.environ), endpoint),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    side = "on" if endpoint else "off"
    if done.returncode != 0:
        raise RuntimeError(f"the {side} child failed: {done.stderr[-800:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["traced"] != (endpoint is not None):  # the two sides must be what they claim
        raise RuntimeError(f"the {side} child was {'' if report['traced'] else 'not '}traced")
    times: list[float] = report["times_s"]
    return times


def _off_cost_us() -> float:
    """Microseconds the tracing helpers of one step cost while nothing is recorded: the step span,
    the child-process context and the engine-request context (each returns at once)."""
    from adapters import tracing
    from flows.runtime.trace_spans import step_span

    if tracing.active():  # measured where nothing is installed, as users without tracing run
        raise RuntimeError("a tracer provider is installed in the benchmark process")

    def one_step() -> None:
        with step_span("bench", agent="a", backend="local"):
            tracing.process_environment()
            with tracing.engine_requests(sampled=True):
                pass

    number = 20_000
    return min(timeit.repeat(one_step, number=number, repeat=5)) / number * 1e6


def run(ctx: BenchContext) -> Outcome:
    """Run the benchmark; see the module docstring."""
    rounds, steps = (2, 20) if ctx.quick else (4, 60)
    log(f"tracing: {rounds} rounds of {steps} steps, off and on, each in a child process")
    off: list[float] = []
    on: list[float] = []
    per_round: list[dict[str, float]] = []
    with OtlpReceiver() as receiver:
        for index in range(rounds):
            order = ("off", "on") if index % 2 == 0 else ("on", "off")
            measured: dict[str, list[float]] = {}
            for side in order:
                endpoint = receiver.endpoint if side == "on" else None
                measured[side] = _side(steps, endpoint, ctx.folder(f"tracing-{index}-{side}"))
            off += measured["off"]
            on += measured["on"]
            per_round.append({s: median_ms(t) for s, t in measured.items()})
        exports = len(receiver.received)
        spans = receiver.span_count()
    off_ms, on_ms = median_ms(off), median_ms(on)
    added = on_ms - off_ms
    off_us = _off_cost_us()
    spans_per_step = spans / (rounds * steps)
    data: dict[str, Any] = {
        "rounds": rounds,
        "steps_per_round": steps,
        "median_ms": {"off": off_ms, "on": on_ms},
        "added_ms": added,
        "ratio": on_ms / off_ms if off_ms else None,
        "per_round_median_ms": per_round,
        "spans_received": spans,
        "exports_received": exports,
        "spans_per_step": spans_per_step,
        "off_helpers_us_per_step": off_us,
        "target_added_ms": TARGET_ADDED_MS,
        "target_off_us": TARGET_OFF_US,
        "met": added <= TARGET_ADDED_MS and off_us <= TARGET_OFF_US,
        "raw_s": {"off": off, "on": on},
    }
    rows = [
        Row(
            "tracing: a step traced (OTLP/HTTP) vs not",
            f"{on_ms:.1f} ms/step",
            f"{off_ms:.1f} ms (off)",
            f"{added:+.1f} ms ({on_ms / off_ms:.2f}x)" if off_ms else f"{added:+.1f} ms",
            f"<= +{TARGET_ADDED_MS:g} ms",
            added <= TARGET_ADDED_MS,
        ),
        Row(
            "  spans received by the loopback collector",
            f"{spans} ({spans_per_step:.1f}/step)",
            f"{exports} exports",
        ),
        Row(
            "  tracing off: the platform's helpers per step",
            f"{off_us:.1f} us/step",
            "",
            "",
            f"<= {TARGET_OFF_US:g} us",
            off_us <= TARGET_OFF_US,
        ),
    ]
    return Outcome(data, rows)


# -- the child ------------------------------------------------------------------------------------


def _child(steps: int, scratch: Path) -> int:
    """Run ``steps`` trivial steps in one flow run the way users do; print their times."""
    from prefect import flow

    from adapters import tracing
    from adapters.selection import resolve_runner
    from adapters.settings import load_settings
    from flows.benchmarks.step_overhead import trivial_spec
    from flows.runtime.step_task import execute_step

    settings = load_settings().with_changes(backend="local", cache_dir=scratch / "caches")
    tracing.configure(settings.trace_config())
    nonce = uuid.uuid4().hex[:12]

    @flow(name="bench-tracing")
    async def steps_flow() -> list[float]:
        runner = resolve_runner("local", cache_dir=settings.cache_dir)
        times = []
        for i in range(steps):
            spec = trivial_spec(nonce, i, ("python", "-c", "pass"))
            started = time.perf_counter()
            outcome = await execute_step(spec, "local", settings=settings, runner=runner)
            times.append(time.perf_counter() - started)
            if outcome.error is not None:
                raise outcome.error
        return times

    times = asyncio.run(steps_flow())
    print(json.dumps({"times_s": times, "traced": tracing.active()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.benchmarks.tracing --child N --scratch DIR`` (run by :func:`run`)."""
    parser = argparse.ArgumentParser(prog="python -m flows.benchmarks.tracing")
    parser.add_argument("--child", type=int, required=True, help="steps to run and time")
    parser.add_argument("--scratch", type=Path, required=True, help="a scratch folder")
    ns = parser.parse_args(argv)
    return _child(ns.child, ns.scratch)


if __name__ == "__main__":
    sys.exit(main())
