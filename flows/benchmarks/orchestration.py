"""Benchmark 1, orchestration share: what Prefect and the agent manager add to the main job.

The 5,000-row pipeline (``data_pipeline(rows=5000, backend="local")``: the flow the CLI runs, each
step chosen by :class:`~agents.AgentManager` and run as a ``run_step`` task run) against the
benchmark's Prefect server, uncached (a fresh work folder each time), run
:attr:`~flows.benchmarks._context.BenchContext.repeats` times. Two claims:

* **share**: the flow's wall time over the sum of its steps' own run times (each step's command as
  the runner timed it, ``run_s`` in ``summary.json``) is at most 1.5 (median of the runs);
* **no stall**: no step waits more than 0.5 s between being chosen and starting, read from the
  server as the time from a task run's first state (``Pending``, set when the agent manager hands
  the step to ``run_step``) to its ``Running`` state, over every step of every run.

Also reported: whether any task run carries tags (a tagged task run makes Prefect reserve tag
concurrency slots first, which stalls for 2 s at a time on a SQLite server), and the share over the
critical path (ingest + validate + the slowest transform + aggregate + report) for comparison.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any
from uuid import UUID

from flows.benchmarks._context import BenchContext, log
from flows.benchmarks._pipeline import Timed, run_pipeline
from flows.benchmarks._report import Outcome, Row
from flows.steps.pipeline import TRANSFORM, declared

__all__ = ["ROWS", "TARGET_RATIO", "TARGET_WAIT_S", "run", "step_waits"]

ROWS = 5_000
TARGET_RATIO = 1.5
TARGET_WAIT_S = 0.5
_RECORDED_WITHIN_S = 30.0


async def step_waits(flow_run_id: str, steps: int) -> list[dict[str, Any]]:
    """Per task run of ``flow_run_id``: name, tags, and seconds from ``Pending`` to ``Running``.

    Waits (up to 30 s) until the server has recorded ``steps`` task runs with a start time: it
    records task runs in batches, after the flow has returned.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    deadline = time.monotonic() + _RECORDED_WITHIN_S
    async with get_client() as client:
        while True:
            runs = await client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    flow_run_id=TaskRunFilterFlowRunId(any_=[UUID(flow_run_id)])
                )
            )
            started = [r for r in runs if r.start_time is not None]
            if len(started) >= steps or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        found = []
        for run in started:
            states = sorted(await client.read_task_run_states(run.id), key=lambda s: s.timestamp)
            pending = next((s.timestamp for s in states if s.type.value == "PENDING"), None)
            running = next((s.timestamp for s in states if s.type.value == "RUNNING"), None)
            wait = (running - pending).total_seconds() if pending and running else None
            found.append({"name": run.name, "tags": list(run.tags), "wait_s": wait})
    return found


def _critical_path_s(steps: list[dict[str, Any]]) -> float:
    transforms = [s["run_s"] or 0.0 for s in steps if declared(s["name"]) is TRANSFORM]
    others = [s["run_s"] or 0.0 for s in steps if declared(s["name"]) is not TRANSFORM]
    return sum(others) + max(transforms, default=0.0)


def _one(ctx: BenchContext, i: int) -> dict[str, Any]:
    folder = ctx.folder(f"orchestration-{i}")
    exclude = (ctx.server_pid,) if ctx.server_pid else ()
    timed: Timed = run_pipeline(folder / "out", folder / "work", rows=ROWS, exclude=exclude)
    steps = timed.summary["steps"]
    run_s = sum(s["run_s"] or 0.0 for s in steps)
    waits = asyncio.run(step_waits(str(timed.summary["flow_run_id"]), len(steps)))
    known = [w["wait_s"] for w in waits if w["wait_s"] is not None]
    data = {
        "wall_s": timed.seconds,
        "steps_run_s": run_s,
        "critical_path_run_s": _critical_path_s(steps),
        "ratio": timed.seconds / run_s,
        "ratio_critical_path": timed.seconds / _critical_path_s(steps),
        "max_wait_s": max(known, default=None),
        "waits": waits,
        "tagged_task_runs": sum(1 for w in waits if w["tags"]),
        "steps": steps,
    }
    log(
        f"orchestration {ROWS:,} rows, run {i + 1}: {timed.seconds:.2f} s wall,"
        f" {run_s:.2f} s in steps ({data['ratio']:.2f}x), longest wait"
        f" {data['max_wait_s'] if data['max_wait_s'] is None else round(data['max_wait_s'], 3)} s"
    )
    return data


def run(ctx: BenchContext) -> Outcome:
    """Run the benchmark; see the module docstring."""
    log(f"orchestration: the {ROWS:,}-row pipeline through the agent manager, {ctx.repeats} x")
    runs = [_one(ctx, i) for i in range(ctx.repeats)]
    ratio = statistics.median(r["ratio"] for r in runs)
    wall = statistics.median(r["wall_s"] for r in runs)
    steps_s = statistics.median(r["steps_run_s"] for r in runs)
    waits = [r["max_wait_s"] for r in runs if r["max_wait_s"] is not None]
    max_wait = max(waits) if waits else None
    tagged = sum(r["tagged_task_runs"] for r in runs)
    ratio_met = ratio <= TARGET_RATIO
    wait_met = max_wait is not None and max_wait <= TARGET_WAIT_S and len(waits) == len(runs)
    data: dict[str, Any] = {
        "rows": ROWS,
        "repeats": len(runs),
        "target_ratio": TARGET_RATIO,
        "target_wait_s": TARGET_WAIT_S,
        "ratio": ratio,
        "ratio_critical_path": statistics.median(r["ratio_critical_path"] for r in runs),
        "max_wait_s": max_wait,
        "tagged_task_runs": tagged,
        "met": ratio_met and wait_met,
        "runs": runs,
    }
    rows = [
        Row(
            f"orchestration {ROWS // 1000}k rows: flow wall time vs steps' own time",
            f"{wall:.2f} s (median of {len(runs)})",
            f"{steps_s:.2f} s (sum of run_s)",
            f"{ratio:.2f}x",
            f"<= {TARGET_RATIO:g}x",
            ratio_met,
        ),
        Row(
            "  longest wait of a step, chosen -> running",
            "-" if max_wait is None else f"{max_wait * 1000:.0f} ms",
            "",
            "",
            f"<= {TARGET_WAIT_S * 1000:g} ms",
            wait_met,
        ),
        Row(
            "  vs the critical path (slowest transform only)",
            f"{wall:.2f} s",
            "",
            f"{data['ratio_critical_path']:.2f}x",
        ),
        Row("  task runs carrying tags", str(tagged), "", "", "0", tagged == 0),
    ]
    return Outcome(data, rows)
