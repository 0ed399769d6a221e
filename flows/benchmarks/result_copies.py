"""Benchmark 9, result copies: what it costs that no result shares storage (issue 21, item 3).

The report step used to hard-link every result file to the step outputs it came from; now it
gives each result a copy of its own (a copy-on-write clone where the file system has them,
:func:`flows.steps.report.clone_or_copy`). Measured at 10M rows (100k with ``--quick``):

1. the pipeline, uncached, through the flow users run (``data_pipeline(input=<csv>,
   backend="local")``): its wall time and its report step's (``run_s`` in ``summary.json``);
2. in this process, on the same result files, warm in the page cache: placing them the way the
   report step does now (``clone_or_copy``) against hard-linking them (``os.link``, the old way),
   the median of 3 rounds each, into fresh folders on the work folder's file system.

Reported: the report step's share of the run, the copies' time and bytes against the links', and
whether the file system cloned (no data written) or copied. No target: the number is the cost.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from flows.benchmarks._context import BenchContext, log
from flows.benchmarks._pipeline import generate_input, run_pipeline
from flows.benchmarks._report import Outcome, Row
from flows.steps.pipeline import REPORT

__all__ = ["run"]

_ROUNDS = 3


def _result_files(output: Path) -> list[Path]:
    names = ("aggregates.csv", "quarantine.csv")
    return [output / n for n in names] + sorted((output / "data").glob("part-*.parquet"))


def _place(files: list[Path], into: Path, how: str) -> tuple[float, list[str]]:
    from flows.steps.report import clone_or_copy

    into.mkdir(parents=True)
    kinds: list[str] = []
    started = time.perf_counter()
    for i, src in enumerate(files):
        target = into / f"{i:03d}-{src.name}"
        if how == "link":
            os.link(src, target)
            kinds.append("link")
        else:
            kinds.append(clone_or_copy(src, target))
    seconds = time.perf_counter() - started
    shutil.rmtree(into)
    return seconds, kinds


def run(ctx: BenchContext) -> Outcome:
    """Run the benchmark."""
    rows = ctx.rerun_rows
    folder = ctx.folder(f"copies-{rows}")
    csv_path, _ = generate_input(rows, folder / "input")
    exclude = (ctx.server_pid,) if ctx.server_pid else ()
    log(f"result copies {rows:,} rows: the pipeline, uncached")
    timed = run_pipeline(folder / "out", folder / "work", csv_path=csv_path, exclude=exclude)
    report = next(s for s in timed.summary["steps"] if s["name"] == REPORT.name)
    report_s = float(report["run_s"] or report["duration_s"])
    files = _result_files(folder / "out")
    size = sum(f.stat().st_size for f in files)
    log(f"result copies {rows:,} rows: {len(files)} files, {size / 2**20:.0f} MiB, x{_ROUNDS}")
    copies: list[float] = []
    links: list[float] = []
    kinds: list[str] = []
    for n in range(_ROUNDS):  # interleaved, so both meet the same machine
        seconds, kinds = _place(files, folder / "work" / f"copies-{n}", "copy")
        copies.append(seconds)
        links.append(_place(files, folder / "work" / f"links-{n}", "link")[0])
    copy_s, link_s = statistics.median(copies), statistics.median(links)
    cloned = set(kinds) == {"clone"}
    data: dict[str, Any] = {
        "rows": rows,
        "pipeline_s": timed.seconds,
        "report_step_s": report_s,
        "report_share": report_s / timed.seconds,
        "files": len(files),
        "bytes": size,
        "copy_s": copy_s,
        "copies_s": copies,
        "link_s": link_s,
        "links_s": links,
        "placed_as": sorted(set(kinds)),
        "extra_bytes_on_disk": 0 if cloned else size,
        "met": None,
    }
    label = f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows // 1000}k"
    how = "copy-on-write clones" if cloned else "byte copies (no clones on this file system)"
    return Outcome(
        data,
        [
            Row(
                f"report step {label} rows vs the whole run",
                f"{report_s:.2f} s",
                f"{timed.seconds:.1f} s",
                f"{report_s / timed.seconds:.1%}",
            ),
            Row(
                f"  placing the {len(files)} result files ({size / 2**20:.0f} MiB): {how}",
                f"{copy_s:.3f} s",
                f"{link_s * 1000:.2f} ms (hard links)",
                f"{copy_s / link_s:.0f}x" if link_s > 0 else "",
            ),
            Row(
                "  disk taken by the result beyond the cache",
                "0 MiB" if cloned else f"{size / 2**20:.0f} MiB",
                "0 MiB (hard links)",
            ),
        ],
    )
