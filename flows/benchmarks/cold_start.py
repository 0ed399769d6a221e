"""Benchmark 7, the default run: ``python -m flows.data_pipeline`` with nothing configured.

Every run here is the CLI as a new process, timed from spawn to exit, in an empty folder, with no
``PREFECT_API_URL`` and no ``PREFECT_*``/``AIOP_*`` settings except a fresh ``PREFECT_HOME``, a
fresh cache folder and ``PREFECT_SERVER_API_PORT`` (a free port, so that a server someone else
runs on 4200 is not picked up). With nothing configured the CLI starts, or reuses, the local
Prefect server of :mod:`flows.server.local_server` (adr/0016-default-run-prefect-server.md). In order:

1. **first run on a fresh machine**: ``python -m flows.data_pipeline --rows 100000`` (the default
   size): it starts the local server (new database, migrations) while it imports, then runs.
   Target: at most 20 s end to end;
2. **repeat default runs** of 5,000 rows (the local server now running), taking turns with
3. **the same run on a running server**: ``PREFECT_API_URL`` set to that server, so the only
   difference is finding the server; :attr:`~flows.benchmarks._context.BenchContext.repeats`
   pairs, a new work folder each time (uncached). Target: median default run at most 1.5x;
4. (full runs only) the old default for reference: the 5,000-row run with
   ``AIOP_PREFECT_SERVER=embedded`` (Prefect's temporary per-run server; migrated database),
   after the local server was stopped.

The local server is stopped at the end whatever happens. Run after the benchmark's own server has
stopped, so that only this process tree is busy. The installed packages and their bytecode are
warm (a user's second project would see the same); the operating system's file cache is warm too.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from adapters.settings import Settings, variable_name
from flows.benchmarks._context import BenchContext, log
from flows.benchmarks._report import Outcome, Row
from flows.server.local_server import client_environment, free_port, stop

__all__ = ["REPEAT_ROWS", "ROWS", "TARGET_RATIO", "TARGET_S", "run", "skipped"]

ROWS = 100_000
REPEAT_ROWS = 5_000
TARGET_S = 20.0
TARGET_RATIO = 1.5
_ROOT = Path(__file__).resolve().parents[2]
_TIMEOUT_S = 600.0


def _clean_env(folder: Path, port: int, **changes: Any) -> dict[str, str]:
    """A child's environment: no Prefect setting, the platform's defaults with the cache volumes
    in ``folder`` and ``changes`` (settings fields)."""
    settings = Settings.model_construct().with_changes(cache_dir=folder / "caches", **changes)
    env = settings.environment_for_child(
        {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    )
    env["PREFECT_HOME"] = str(folder / "prefect-home")
    env["PREFECT_SERVER_API_PORT"] = str(port)
    # The project is importable from anywhere once installed; this keeps a plain checkout working.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _timed_run(args: list[str], folder: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        args, cwd=folder, env=env, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:])} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, done.stderr


def _pipeline(rows: int, work: str) -> list[str]:
    return [sys.executable, "-m", "flows.data_pipeline", "--rows", str(rows), "--work-dir", work]


def run(ctx: BenchContext) -> Outcome:
    """Run the benchmark; see the module docstring."""
    folder = ctx.folder("default-run")
    home = folder / "prefect-home"
    port = free_port()
    env = _clean_env(folder, port)
    log(f"default run: python -m flows.data_pipeline --rows {ROWS} with a fresh PREFECT_HOME")
    try:
        first_s, first_err = _timed_run(_pipeline(ROWS, ".aiop/work-first"), folder, env)
        client = client_environment(home)  # its URL and auth string, as a user's client has them
        if client is None:
            raise RuntimeError(f"the first run started no local server; its stderr: {first_err}")
        on_server = {**_clean_env(folder, port), **client}
        log(f"default run: {ctx.repeats} x {REPEAT_ROWS:,} rows, default vs PREFECT_API_URL set")
        default_s: list[float] = []
        server_s: list[float] = []
        for i in range(ctx.repeats):
            default_s.append(_timed_run(_pipeline(REPEAT_ROWS, f".aiop/w-d{i}"), folder, env)[0])
            server_s.append(
                _timed_run(_pipeline(REPEAT_ROWS, f".aiop/w-s{i}"), folder, on_server)[0]
            )
    finally:
        stop(home)
    embedded_s: float | None = None
    if not ctx.quick:
        log(
            f"default run: {REPEAT_ROWS:,} rows with {variable_name('prefect_server')}=embedded"
            " (old default)"
        )
        embedded = _clean_env(folder, port, prefect_server="embedded")
        embedded_s = _timed_run(_pipeline(REPEAT_ROWS, ".aiop/w-e"), folder, embedded)[0]
    repeat, served = statistics.median(default_s), statistics.median(server_s)
    ratio = repeat / served
    data: dict[str, Any] = {
        "rows": ROWS,
        "repeat_rows": REPEAT_ROWS,
        "first_run_s": first_s,
        "first_run_stderr": first_err,
        "default_runs_s": default_s,
        "server_runs_s": server_s,
        "ratio": ratio,
        "embedded_run_s": embedded_s,
        "target_s": TARGET_S,
        "target_ratio": TARGET_RATIO,
        "met": first_s <= TARGET_S and ratio <= TARGET_RATIO,
        "skipped": False,
    }
    rows = [
        Row(
            "default run: first python -m flows.data_pipeline, fresh machine",
            f"{first_s:.1f} s",
            f"{ROWS // 1000}k rows, server start included",
            "",
            f"<= {TARGET_S:g} s",
            first_s <= TARGET_S,
        ),
        Row(
            f"  repeat default run {REPEAT_ROWS // 1000}k rows vs PREFECT_API_URL set",
            f"{repeat:.2f} s (median of {len(default_s)})",
            f"{served:.2f} s",
            f"{ratio:.2f}x",
            f"<= {TARGET_RATIO:g}x",
            ratio <= TARGET_RATIO,
        ),
        Row(
            f"  old default: embedded server per run, {REPEAT_ROWS // 1000}k rows",
            "skipped in --quick" if embedded_s is None else f"{embedded_s:.1f} s",
            "" if embedded_s is None else f"{served:.2f} s",
            "" if embedded_s is None else f"{embedded_s / served:.2f}x",
        ),
    ]
    return Outcome(data, rows)


def skipped(reason: str) -> Outcome:
    """The result when the benchmark is not run (``--quick``)."""
    data = {"rows": ROWS, "target_s": TARGET_S, "met": None, "skipped": True, "reason": reason}
    return Outcome(
        data, [Row("default run", f"skipped in --quick ({reason})", target=f"<= {TARGET_S:g} s")]
    )
