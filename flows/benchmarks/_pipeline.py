"""Running the pieces benchmarks 1, 5 and 6 time: input generation, the pipeline flow, the baseline.

Every run is timed end to end and its process tree's resident memory sampled
(:class:`~flows.benchmarks._measure.PeakTreeMemory`); the pipeline runs in this process (it is the
flow's orchestrator) with its steps as child processes, the Prefect server left out.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.benchmarks._measure import PeakTreeMemory, tree_rss_bytes
from flows.steps.pipeline import INGEST

__all__ = ["Timed", "generate_input", "run_baseline", "run_command", "run_pipeline"]

SEED = 42
GROUP_BY = "category"


@dataclass
class Timed:
    """One timed run.

    Attributes:
        seconds: wall time, end to end.
        peak_bytes: sampled peak resident memory of the process tree.
        exact_peak_bytes: the kernel's ``ru_maxrss`` of a single child process, when there is one.
        floor_bytes: for a pipeline, the resident memory of the flow's own process when the run
            starts (Prefect's client and engine, and the benchmark around them): part of
            ``peak_bytes`` that no step holds.
        summary: what the run reported (the pipeline's ``summary.json``, the baseline's summary).
        output: its output folder.
    """

    seconds: float
    peak_bytes: int
    summary: dict[str, Any] = field(default_factory=dict)
    output: Path | None = None
    exact_peak_bytes: int | None = None
    work: Path | None = None
    floor_bytes: int | None = None

    def as_json(self) -> dict[str, Any]:
        """Raw numbers for the ``--json`` file."""
        return {
            "seconds": self.seconds,
            "peak_bytes": self.peak_bytes,
            "exact_peak_bytes": self.exact_peak_bytes,
            "floor_bytes": self.floor_bytes,
            "output": str(self.output) if self.output else None,
        }


def generate_input(rows: int, folder: Path) -> tuple[Path, float]:
    """Write the sample CSV of ``rows`` rows (seed 42) with ``python -m flows.steps ingest``.

    Returns:
        The CSV's path and the seconds it took.
    """
    args = [sys.executable, "-m", "flows.steps", INGEST.name, "--rows", str(rows)]
    args += ["--seed", str(SEED)]
    started = time.perf_counter()
    done = subprocess.run([*args, "--output", str(folder)], capture_output=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ingest exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return folder / "input.csv", seconds


def run_baseline(csv_path: Path, output: Path, group_by: str = GROUP_BY) -> Timed:
    """Run :mod:`flows.benchmarks.duckdb_baseline` as its own process on ``csv_path``."""
    args = ["-m", "flows.benchmarks.duckdb_baseline", "--input", str(csv_path)]
    return run_command([*args, "--output", str(output), "--group-by", group_by], output)


def run_command(args: list[str], output: Path | None = None) -> Timed:
    """Run ``python ARGS`` as its own process, timed, with its peak memory; its last stdout line
    is its JSON summary (``{}`` when it printed none).

    Raises:
        RuntimeError: the process exited with an error.
    """
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with PeakTreeMemory(proc.pid) as peak:
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{args[1]} exited {proc.returncode}: {err.decode()[-2000:]}")
    lines = out.decode().strip().splitlines()
    summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return Timed(seconds, peak.bytes, summary, output, exact_peak_bytes=usage.ru_maxrss * 1024)


def run_pipeline(
    output: Path,
    work: Path,
    *,
    csv_path: Path | None = None,
    rows: int | None = None,
    exclude: tuple[int, ...] = (),
    partitions: int | None = None,
    group_by: str = GROUP_BY,
) -> Timed:
    """Run the ``data_pipeline`` flow (local backend) on ``csv_path``, or generating ``rows``,
    with ``partitions`` transform partitions (default: one per core).

    Raises:
        RuntimeError: the flow run did not complete.
    """
    from flows.data_pipeline.flow import data_pipeline

    params: dict[str, Any] = {
        "output": str(output),
        "work_dir": str(work),
        "backend": "local",
        "group_by": group_by,
        "partitions": partitions,
    }
    if csv_path is not None:
        params["input"] = str(csv_path)
    else:
        params.update(rows=rows, seed=SEED)

    async def flow_run() -> dict[str, Any]:
        state = await data_pipeline(**params, return_state=True)
        if not state.is_completed():
            raise RuntimeError(f"the pipeline ended {state.name}: {state.message}")
        result = await state.aresult()
        assert isinstance(result, dict)
        return result

    floor = tree_rss_bytes(os.getpid(), exclude)
    started = time.perf_counter()
    with PeakTreeMemory(exclude=exclude) as peak:
        summary = asyncio.run(flow_run())
    seconds = time.perf_counter() - started
    return Timed(seconds, peak.bytes, summary, output, work=work, floor_bytes=floor)
