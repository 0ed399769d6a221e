"""Benchmark 6, cold start: a user's first ``python -m flows.data_pipeline``.

``python -m flows.data_pipeline --rows 100000`` (the default size) as a new process, in an empty
folder (its default ``output/`` and ``.aiop/work`` land there), with a fresh ``PREFECT_HOME``, no
``PREFECT_API_URL`` (so Prefect starts its embedded, temporary server: new SQLite database,
migrations) and no ``PREFECT_*`` or ``AIOP_*`` settings, timed from spawn to exit. Target: at
most 20 s. The same command is then run once more with the same ``PREFECT_HOME`` (its database
already migrated; a new embedded server still starts) and a new work folder (so no step is
served from the cache), to show what the first time alone costs. The installed packages and their bytecode are warm (a user's second project would see
the same); the operating system's file cache is warm too.

Run after the benchmark's own server has stopped, so that only this process tree is busy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from flows.benchmarks._context import BenchContext, log
from flows.benchmarks._report import Outcome, Row

__all__ = ["ROWS", "TARGET_S", "run", "skipped"]

ROWS = 100_000
TARGET_S = 20.0
_ROOT = Path(__file__).resolve().parents[2]
_TIMEOUT_S = 600.0


def _clean_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIOP_"))}
    env["PREFECT_HOME"] = str(folder / "prefect-home")
    env["AIOP_CACHE_DIR"] = str(folder / "caches")
    # The project is importable from anywhere once installed; this keeps a plain checkout working.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _timed_run(args: list[str], folder: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        args,
        cwd=folder,
        env=_clean_env(folder),
        capture_output=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"python -m flows.data_pipeline exited {done.returncode}: {done.stderr.decode()[-2000:]}"
        )
    return seconds


def run(ctx: BenchContext) -> Outcome:
    """Run the benchmark; see the module docstring."""
    folder = ctx.folder("cold-start")
    args = [sys.executable, "-m", "flows.data_pipeline", "--rows", str(ROWS)]
    log(f"cold start: {' '.join(['python', *args[1:]])} with a fresh PREFECT_HOME, then again")
    seconds = _timed_run(args, folder)
    again = _timed_run([*args, "--work-dir", ".aiop/work-again"], folder)  # not served from cache
    data: dict[str, Any] = {
        "command": ["python", *args[1:]],
        "rows": ROWS,
        "seconds": seconds,
        "second_run_s": again,
        "target_s": TARGET_S,
        "met": seconds <= TARGET_S,
        "skipped": False,
    }
    rows = [
        Row(
            "cold start: first python -m flows.data_pipeline",
            f"{seconds:.1f} s",
            "",
            "",
            f"<= {TARGET_S:g} s",
            seconds <= TARGET_S,
        ),
        Row("  second run, same PREFECT_HOME (migrated), uncached", f"{again:.1f} s"),
    ]
    return Outcome(data, rows)


def skipped(reason: str) -> Outcome:
    """The result when the benchmark is not run (``--quick``)."""
    data = {"rows": ROWS, "target_s": TARGET_S, "met": None, "skipped": True, "reason": reason}
    return Outcome(
        data, [Row("cold start", f"skipped in --quick ({reason})", target=f"<= {TARGET_S:g} s")]
    )
