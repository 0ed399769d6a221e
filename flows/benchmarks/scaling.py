"""Benchmark 8, how cost grows: per-step overhead and throughput against rows and against fan-out.

One target, fan-out's (64 partitions at most 1.5x the wall time of 8); two tables for the
benchmarks page:

* **against rows**: the pipeline runs the other benchmarks already made (5,000 rows from
  :mod:`~flows.benchmarks.orchestration`, 100k / 1M / 10M rows from
  :mod:`~flows.benchmarks.throughput`): wall time, rows per second, the sum of the steps' own run
  times, and the median per-step overhead (a step's wall time in the flow minus its own run time);
* **against fan-out** (full runs only): the 100,000-row sample with 1, 8 and 64 transform
  partitions, uncached, against the benchmark's server: the same columns plus the number of
  steps (with the local backend at most one transform step per core, each writing a run of
  partitions; see :func:`flows.data_pipeline.options.partition_runs`).
"""

from __future__ import annotations

import statistics
from typing import Any

from flows.benchmarks._context import BenchContext, log
from flows.benchmarks._pipeline import run_pipeline
from flows.benchmarks._report import Outcome, Row

__all__ = ["FAN_OUT", "FAN_OUT_ROWS", "TARGET_64_VS_8", "run"]

FAN_OUT = (1, 8, 64)
FAN_OUT_ROWS = 100_000
#: Wall time with 64 partitions over that with 8 (issue 25, goal 3).
TARGET_64_VS_8 = 1.5


def _step_stats(steps: list[dict[str, Any]]) -> dict[str, Any]:
    ran = [s for s in steps if s.get("run_s") is not None]
    overheads = [s["duration_s"] - s["run_s"] for s in ran]
    return {
        "steps": len(steps),
        "steps_run_s": sum(s["run_s"] for s in ran),
        "median_step_overhead_s": statistics.median(overheads) if overheads else None,
        "max_step_overhead_s": max(overheads) if overheads else None,
    }


def _label(rows: int) -> str:
    return f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows // 1000}k"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def by_rows(
    orchestration: dict[str, Any] | None, throughput: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """One entry per input size measured by the other benchmarks of this run."""
    found: list[dict[str, Any]] = []
    if orchestration and orchestration.get("runs"):
        runs = orchestration["runs"]
        median = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
        found.append(
            {
                "rows": orchestration["rows"],
                "wall_s": median["wall_s"],
                "rows_per_s": orchestration["rows"] / median["wall_s"],
                **_step_stats(median["steps"]),
            }
        )
    for size in (throughput or {}).get("sizes", {}).values():
        pipeline = size["pipeline"]
        found.append(
            {
                "rows": size["rows"],
                "wall_s": pipeline["seconds"],
                "rows_per_s": pipeline["rows_per_s"],
                **_step_stats(size.get("steps") or []),
            }
        )
    return found


def by_fan_out(ctx: BenchContext) -> list[dict[str, Any]]:
    """The :data:`FAN_OUT_ROWS`-row pipeline with each of :data:`FAN_OUT` partitions."""
    exclude = (ctx.server_pid,) if ctx.server_pid else ()
    found = []
    for k in FAN_OUT:
        folder = ctx.folder(f"fan-out-{k}")
        timed = run_pipeline(
            folder / "out", folder / "work", rows=FAN_OUT_ROWS, exclude=exclude, partitions=k
        )
        stats = _step_stats(timed.summary["steps"])
        log(f"scaling: {k} partitions, {timed.seconds:.1f} s, {stats['steps']} steps")
        found.append(
            {
                "partitions": k,
                "rows": FAN_OUT_ROWS,
                "wall_s": timed.seconds,
                "rows_per_s": FAN_OUT_ROWS / timed.seconds,
                "peak_bytes": timed.peak_bytes,
                **stats,
            }
        )
    return found


def run(
    ctx: BenchContext,
    orchestration: dict[str, Any] | None = None,
    throughput: dict[str, Any] | None = None,
) -> Outcome:
    """Run the benchmark; see the module docstring."""
    rows_table = by_rows(orchestration, throughput)
    fan_out: list[dict[str, Any]] = []
    if not ctx.quick:
        log(f"scaling: {FAN_OUT_ROWS:,} rows with {', '.join(map(str, FAN_OUT))} partitions")
        fan_out = by_fan_out(ctx)
    rows = [
        Row(
            f"scaling {_label(r['rows'])} rows: wall, per-step overhead",
            f"{r['wall_s']:.2f} s ({r['rows_per_s']:,.0f} rows/s)",
            f"{r['steps_run_s']:.2f} s in {r['steps']} steps",
            f"{_ms(r['median_step_overhead_s'])}/step",
        )
        for r in rows_table
    ]
    rows += [
        Row(
            f"scaling {_label(FAN_OUT_ROWS)} rows, {r['partitions']} partitions",
            f"{r['wall_s']:.2f} s ({r['rows_per_s']:,.0f} rows/s)",
            f"{r['steps_run_s']:.2f} s in {r['steps']} steps",
            f"{_ms(r['median_step_overhead_s'])}/step",
        )
        for r in fan_out
    ]
    met: bool | None = None
    walls = {r["partitions"]: r["wall_s"] for r in fan_out}
    if 8 in walls and 64 in walls:
        ratio = walls[64] / walls[8]
        met = ratio <= TARGET_64_VS_8
        rows.append(
            Row(
                "  fan-out: 64 partitions vs 8 at the same rows",
                f"{walls[64]:.2f} s",
                f"{walls[8]:.2f} s",
                f"{ratio:.2f}x",
                f"<= {TARGET_64_VS_8:g}x",
                met,
            )
        )
    if ctx.quick:
        rows.append(Row("scaling: fan-out 1/8/64 partitions", "skipped in --quick"))
    data = {"by_rows": rows_table, "by_fan_out": fan_out, "target_64_vs_8": TARGET_64_VS_8}
    return Outcome({**data, "met": met}, rows)
