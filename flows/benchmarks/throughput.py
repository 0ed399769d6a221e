"""Benchmark 5, pipeline throughput: the data pipeline against a single-process DuckDB script.

For each size (1M and 10M rows; 100k with ``--quick``) the sample CSV is generated once
(``python -m flows.steps ingest --rows N --seed 42``), then, in this order (steps 1 and 2 taking
turns, 3 times at 1M and twice at 10M, once with ``--quick``; the medians are compared):

1. **pipeline**: ``data_pipeline(input=<csv>, group_by="category", backend="local")`` against the
   Prefect server, uncached (fresh work folder), every step a task run and a process: validate,
   transform (one partition per core, in parallel), aggregate, report;
2. **baseline**: :mod:`flows.benchmarks.duckdb_baseline` on the same CSV, one process, and the
   plain DuckDB script (:mod:`flows.benchmarks.plain_script`) a user would write instead;
3. **pipeline with generation**: ``data_pipeline(rows=N, seed=42)``, the ingest step generating the
   CSV itself (reported beside generation + baseline).

Both sides start from the same CSV, warm in the page cache. The outputs are compared: row counts,
column types, quarantined lines and every aggregate cell; a mismatch is reported, not hidden.
Targets (issue 13, goal 3): pipeline time at most 1.5x the baseline's at 1M rows and 1.2x at 10M,
pipeline peak memory (whole process tree: the flow's process and its step processes) at most the
baseline's, and the validate step at least as fast per row as the ingest step generating the input;
against the plain script (issue 25, goal 1), at most 1.5x at 10M rows and peak memory at most its.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

from flows.benchmarks._context import BenchContext, log
from flows.benchmarks._pipeline import (
    GROUP_BY,
    Timed,
    generate_input,
    run_baseline,
    run_command,
    run_pipeline,
)
from flows.benchmarks._report import Outcome, Row
from flows.steps.pipeline import INGEST, PIPELINE_STEPS, TRANSFORM, VALIDATE, declared

__all__ = [
    "PLAIN_TARGET_RATIOS",
    "TARGET_RATIOS",
    "compare_outputs",
    "measure",
    "rows_of",
    "run",
    "time_split",
    "validate_vs_ingest",
]

#: Pipeline time over the script's, at the sizes of the full run (issue 13, goal 3).
TARGET_RATIOS = {1_000_000: 1.5, 10_000_000: 1.2}
#: Pipeline time over the plain DuckDB script's on generated rows (issue 25, goal 1).
PLAIN_TARGET_RATIOS = {10_000_000: 1.5}


def _quarantined_lines(path: Path) -> set[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["line"] for row in csv.DictReader(fh)}


def _same_cell(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(x, y, rel_tol=1e-12, abs_tol=0.0)


def compare_outputs(pipeline: Path, baseline: Path) -> list[str]:
    """Differences between the pipeline's and the baseline's outputs ([] when they agree).

    Counts, column types, the set of quarantined line numbers and every aggregate cell (equal
    text, or numbers within a relative 1e-12).
    """
    problems: list[str] = []
    ours = _read_json(pipeline / "summary.json")
    theirs = _read_json(baseline / "summary.json")
    for key in ("input_rows", "valid_rows", "quarantined_rows", "columns"):
        if ours.get(key) != theirs.get(key):
            problems.append(f"{key}: pipeline {ours.get(key)!r}, baseline {theirs.get(key)!r}")
    lines_p = _quarantined_lines(pipeline / "quarantine.csv")
    lines_b = _quarantined_lines(baseline / "quarantine.csv")
    if lines_p != lines_b:
        only_p, only_b = sorted(lines_p - lines_b)[:5], sorted(lines_b - lines_p)[:5]
        problems.append(f"quarantined lines differ: only pipeline {only_p}, only baseline {only_b}")
    with (pipeline / "aggregates.csv").open(newline="", encoding="utf-8") as fh:
        agg_p = list(csv.reader(fh))
    with (baseline / "aggregates.csv").open(newline="", encoding="utf-8") as fh:
        agg_b = list(csv.reader(fh))
    if len(agg_p) != len(agg_b) or (agg_p and agg_p[0] != agg_b[0]):
        problems.append(
            f"aggregates shape differs: {agg_p[:1]} x{len(agg_p)} vs {agg_b[:1]} x{len(agg_b)}"
        )
    else:
        for row_p, row_b in zip(agg_p[1:], agg_b[1:], strict=True):
            for name, a, b in zip(agg_p[0], row_p, row_b, strict=True):
                if not _same_cell(a, b):
                    problems.append(f"aggregate {row_p[0]!r}.{name}: pipeline {a}, baseline {b}")
    return problems


def _read_json(path: Path) -> dict[str, Any]:
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _gb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024**3:.2f} GiB"


def _median_run(runs: list[Timed]) -> Timed:
    """The run of median time (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r.seconds)[(len(runs) - 1) // 2]


def _one_size(ctx: BenchContext, rows: int) -> tuple[dict[str, Any], Timed, Path]:
    folder = ctx.folder(f"throughput-{rows}")
    exclude = (ctx.server_pid,) if ctx.server_pid else ()
    csv_path, gen_s = generate_input(rows, folder / "input")
    repeats = ctx.throughput_repeats(rows)
    log(f"throughput {rows:,} rows: input generated in {gen_s:.1f} s; {repeats} x pipeline, script")
    pipelines: list[Timed] = []
    baselines: list[Timed] = []
    plains: list[Timed] = []
    for i in range(repeats):  # taking turns, so that the machine's mood hits all alike
        out, work = folder / f"out-{i}", folder / f"work-{i}"  # fresh work folder: uncached
        pipelines.append(run_pipeline(out, work, csv_path=csv_path, exclude=exclude))
        baselines.append(run_baseline(csv_path, folder / f"baseline-{i}"))
        plain = ["-m", "flows.benchmarks.plain_script", "--input", str(csv_path)]
        plain += ["--output", str(folder / f"plain-{i}"), "--group-by", GROUP_BY]
        plains.append(run_command(plain))
        log(
            f"throughput {rows:,} rows: pipeline {pipelines[-1].seconds:.1f} s,"
            f" script {baselines[-1].seconds:.1f} s, plain script {plains[-1].seconds:.1f} s"
        )
    first, base, plain_run = _median_run(pipelines), _median_run(baselines), _median_run(plains)
    full: Timed | None = None
    if not ctx.quick:  # keeps --quick under a minute
        log(f"throughput {rows:,} rows: pipeline with generation")
        full = run_pipeline(folder / "gen-out", folder / "gen-work", rows=rows, exclude=exclude)
    problems = compare_outputs(folder / "out-0", folder / "baseline-0")
    input_rows = int(first.summary.get("input_rows") or rows)
    data = {
        "rows": rows,
        "input_bytes": csv_path.stat().st_size,
        "generation_s": gen_s,
        "repeats": repeats,
        "pipeline": {
            **first.as_json(),
            "rows_per_s": input_rows / first.seconds,
            "runs_s": [r.seconds for r in pipelines],
            "peak_bytes": max(r.peak_bytes for r in pipelines),
        },
        "baseline": {
            **base.as_json(),
            "rows_per_s": input_rows / base.seconds,
            "runs_s": [r.seconds for r in baselines],
            "peak_bytes": max(r.peak_bytes for r in baselines),
            "exact_peak_bytes": max(r.exact_peak_bytes or 0 for r in baselines),
        },
        "plain_script": {
            **plain_run.as_json(),
            "runs_s": [r.seconds for r in plains],
            "peak_bytes": max(r.peak_bytes for r in plains),
            "exact_peak_bytes": max(r.exact_peak_bytes or 0 for r in plains),
        },
        "ratio_to_plain": first.seconds / plain_run.seconds,
        "baseline_phases_s": base.summary.get("phases"),
        "pipeline_with_generation": None
        if full is None
        else {
            **full.as_json(),
            "rows_per_s": rows / full.seconds,
            "steps": full.summary.get("steps"),
        },
        "ratio": first.seconds / base.seconds,
        "ratio_with_generation": None if full is None else full.seconds / (gen_s + base.seconds),
        "steps": first.summary.get("steps"),
        "counts": {
            k: first.summary.get(k) for k in ("input_rows", "valid_rows", "quarantined_rows")
        },
        "baseline_agrees": not problems,
        "mismatches": problems,
    }
    # The re-run benchmark re-uses run 0's folders; its time is the median of the first runs.
    return data, dataclasses.replace(pipelines[0], seconds=first.seconds), csv_path


def _with_generation_row(label: str, data: dict[str, Any]) -> Row:
    name = f"  with generation {label}: pipeline vs ingest + script"
    full = data["pipeline_with_generation"]
    if full is None:
        return Row(name, "skipped in --quick")
    return Row(
        name,
        f"{full['seconds']:.1f} s",
        f"{data['generation_s'] + data['baseline']['seconds']:.1f} s",
        f"{data['ratio_with_generation']:.2f}x",
    )


def _step_run_s(steps: Any, name: str) -> float | None:
    """A step's own run time (``run_s``) from a pipeline summary's steps."""
    for step in steps or ():
        if step.get("name") == name and step.get("run_s") is not None:
            return float(step["run_s"])
    return None


def validate_vs_ingest(data: dict[str, Any]) -> dict[str, Any]:
    """Seconds per million rows of the validate step and of generating the input.

    Validate is the median pipeline run's step (its own run time); generation is the ingest step
    of the pipeline-with-generation run when there is one, else the stand-alone generation
    (which also pays a process start).
    """
    per = 1e6 / data["rows"]
    validate_s = _step_run_s(data.get("steps"), VALIDATE.name)
    full = data.get("pipeline_with_generation") or {}
    ingest_s = _step_run_s(full.get("steps"), INGEST.name) or data["generation_s"]
    return {
        "validate_s_per_million": None if validate_s is None else validate_s * per,
        "ingest_s_per_million": ingest_s * per,
        "ratio": None if validate_s is None else validate_s / ingest_s,
    }


def time_split(data: dict[str, Any]) -> dict[str, float] | None:
    """Where the median pipeline run's wall time went (None without its steps' times).

    ``validate_s``: the validate step's own run time; ``transform_s``: the slowest transform
    step (a partition's per-group statistics; before 2026-12-07 the re-cut of the valid rows into
    the partitions);
    ``other_steps_s``: ingest, aggregate and report, one after the other; ``orchestration_s``: the
    rest of the wall time (task runs, step processes started and finished, the flow's own work).
    """
    steps = data.get("steps") or []
    validate = _step_run_s(steps, VALIDATE.name)
    if validate is None:
        return None
    transform = max(
        (
            float(step["run_s"])
            for step in steps
            if declared(str(step.get("name", ""))) is TRANSFORM and step.get("run_s") is not None
        ),
        default=0.0,
    )
    rest_of_them = [s.name for s in PIPELINE_STEPS if s not in (VALIDATE, TRANSFORM)]
    others = sum(_step_run_s(steps, name) or 0.0 for name in rest_of_them)
    rest = data["pipeline"]["seconds"] - validate - transform - others
    return {
        "validate_s": validate,
        "transform_s": transform,
        "other_steps_s": others,
        "orchestration_s": rest,
    }


def _split_rows(label: str, data: dict[str, Any]) -> list[Row]:
    split = data.get("time_split") or time_split(data)
    if split is None:
        return []
    script = data["baseline"]["seconds"]
    return [
        Row(
            f"  validate step alone vs the script {label}",
            f"{split['validate_s']:.1f} s",
            f"{script:.1f} s",
            f"{split['validate_s'] / script:.2f}x",
        ),
        Row(
            f"  rest of the pipeline {label}: transform, other steps, orchestration",
            f"{split['transform_s']:.1f} + {split['other_steps_s']:.1f} + "
            f"{split['orchestration_s']:.1f} s",
        ),
    ]


def _plain_rows(rows: int, label: str, data: dict[str, Any]) -> list[Row]:
    """The pipeline against the plain DuckDB script (issue 25, goal 1: 1.5x at 10M rows)."""
    plain = data.get("plain_script")
    if plain is None:
        return []
    target = PLAIN_TARGET_RATIOS.get(rows)
    ratio = data["pipeline"]["seconds"] / plain["seconds"]
    peak = data["pipeline"]["peak_bytes"] / plain["peak_bytes"] if plain["peak_bytes"] else None
    return [
        Row(
            f"  pipeline vs plain DuckDB script {label}",
            f"{data['pipeline']['seconds']:.1f} s",
            f"{plain['seconds']:.1f} s (plain script)",
            f"{ratio:.2f}x",
            f"<= {target:g}x" if target else "",
            ratio <= target if target else None,
        ),
        Row(
            f"  peak memory vs plain script {label} (the flow's own process at the start)",
            f"{_gb(data['pipeline']['peak_bytes'])} ({_gb(data['pipeline'].get('floor_bytes') or 0)})",
            f"{_gb(plain['peak_bytes'])} (plain script)",
            "" if peak is None else f"{peak:.2f}x",
            "<= script" if target else "",
            (peak is not None and peak <= 1.0) if target else None,
        ),
    ]


def rows_of(rows: int, data: dict[str, Any]) -> list[Row]:
    """The table rows of one size (targets: :data:`TARGET_RATIOS`, peak memory at most the
    script's, validate at least as fast per row as ingest)."""
    target = TARGET_RATIOS.get(rows)
    peak, base_peak = data["pipeline"]["peak_bytes"], data["baseline"]["peak_bytes"]
    label = f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows // 1000}k"
    speed = data.get("validate_vs_ingest") or validate_vs_ingest(data)
    per_row = speed["ratio"]
    return [
        Row(
            f"throughput {label} rows: pipeline vs DuckDB script",
            f"{data['pipeline']['seconds']:.1f} s ({data['pipeline']['rows_per_s'] / 1e3:,.0f}k rows/s)",
            f"{data['baseline']['seconds']:.1f} s ({data['baseline']['rows_per_s'] / 1e3:,.0f}k rows/s)",
            f"{data['ratio']:.2f}x",
            f"<= {target:g}x" if target else "",
            data["ratio"] <= target if target else None,
        ),
        Row(
            f"  peak memory {label} (process tree)",
            _gb(peak),
            f"{_gb(base_peak)} (baseline)",
            f"{peak / base_peak:.2f}x" if base_peak else "",
            "<= script" if target else "",
            peak <= base_peak if target else None,
        ),
        Row(
            f"  validate vs ingest {label}, s per 1M rows",
            "-" if per_row is None else f"{speed['validate_s_per_million']:.2f} s",
            f"{speed['ingest_s_per_million']:.2f} s (generation)",
            "-" if per_row is None else f"{per_row:.2f}x",
            "<= 1x" if target else "",
            (per_row is not None and per_row <= 1.0) if target else None,
        ),
        *_plain_rows(rows, label, data),
        *_split_rows(label, data),
        _with_generation_row(label, data),
        Row(
            f"  baseline output agrees {label}",
            "yes" if data["baseline_agrees"] else f"NO: {len(data['mismatches'])} mismatches",
        ),
    ]


def measure(ctx: BenchContext) -> tuple[Outcome, dict[int, tuple[Timed, Path]]]:
    """Run the benchmark; also return each size's first pipeline run and input (for benchmark 6)."""
    sizes: dict[str, Any] = {}
    firsts: dict[int, tuple[Timed, Path]] = {}
    rows_out: list[Row] = []
    verdicts: list[bool] = []
    for rows in ctx.row_counts:
        data, first, csv_path = _one_size(ctx, rows)
        data["validate_vs_ingest"] = validate_vs_ingest(data)
        data["time_split"] = time_split(data)
        sizes[str(rows)] = data
        firsts[rows] = (first, csv_path)
        table = rows_of(rows, data)
        verdicts += [row.met for row in table if row.met is not None]
        rows_out += table
    summary = {
        "target_ratios": {str(k): v for k, v in TARGET_RATIOS.items()},
        "met": all(verdicts) if verdicts else None,
        "sizes": sizes,
    }
    return Outcome(summary, rows_out), firsts


def run(ctx: BenchContext) -> Outcome:
    """Run the benchmark; see the module docstring."""
    return measure(ctx)[0]
