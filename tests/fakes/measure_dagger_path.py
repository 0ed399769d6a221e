"""Per-step overhead of the Dagger path (stand-in engine, exec mode) against the local runner.

Runs the same short command ``--steps`` times through :class:`~adapters.local_runner.LocalRunner`,
through :class:`~adapters.dagger.runner.DaggerRunner` with a session per step (no shared session),
and through it inside one shared session (what a flow run does), and prints the mean wall time
per step, the ratios to local (measured in this one run), and the sessions the stand-in served.
Each step's command differs (its index), so the stand-in's engine-like cache never answers for it.

The stand-in runs commands on the host and answers over loopback HTTP: this measures the adapter's
and the SDK's own cost per step (query building, HTTP, introspection per session), not a real
engine's container start.

Usage:
    python -m tests.fakes.measure_dagger_path --steps 20
"""

from __future__ import annotations

import argparse
import asyncio
import time

from adapters.contract import StepSpec
from adapters.dagger.runner import DaggerRunner
from adapters.local_runner import LocalRunner
from adapters.runner import Runner
from tests.fakes.host_exec import exec_standin_engine


def _spec(i: int, tag: str) -> StepSpec:
    return StepSpec(
        name=f"m-{tag}-{i}",
        image="python:3.12-slim",
        args=["python", "-c", f"print({i})"],
        timeout_s=60,
    )


async def _per_step(runner: Runner, steps: int, tag: str) -> float:
    started = time.perf_counter()
    for i in range(steps):
        result = await runner.run(_spec(i, tag))
        assert result.ok, result.stderr
    return (time.perf_counter() - started) / steps


async def _measure(steps: int) -> None:
    local = await _per_step(LocalRunner(), steps, "local")
    dagger = DaggerRunner(provision_timeout_s=30)
    with exec_standin_engine() as engine:
        per_step = await _per_step(dagger, steps, "per-step")
        sessions_per_step = engine.sessions
        async with dagger.session():
            shared = await _per_step(dagger, steps, "shared")
        sessions_shared = engine.sessions - sessions_per_step
    print(f"steps per variant: {steps}")
    print(f"local runner:                 {local * 1000:7.1f} ms/step")
    print(
        f"dagger, a session per step:   {per_step * 1000:7.1f} ms/step"
        f"  ({per_step / local:.2f}x local, {sessions_per_step} sessions)"
    )
    print(
        f"dagger, one shared session:   {shared * 1000:7.1f} ms/step"
        f"  ({shared / local:.2f}x local, {sessions_shared} session)"
    )


def main() -> None:
    """Parse ``--steps`` and print the measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    asyncio.run(_measure(parser.parse_args().steps))


if __name__ == "__main__":
    main()
