"""Load benchmark of the scale-out topology: N pipeline runs submitted at once (not a timed test).

Starts the topology of docs/guides/scale-out.md on this machine's PostgreSQL and Redis (a fresh
database, ``prefect server start``, ``aiop deploy``, two workers), submits ``--runs``
pipeline runs at the same moment, waits for all of them, then checks that the server recorded every
task run of every flow run (none lost to the task-run recorder) and prints the throughput::

    python -m tests.scale.load_benchmark                # 20 runs of 2,000 rows, 2 partitions
    python -m tests.scale.load_benchmark --runs 40 --workers 3 --rows 10000

Exit status: 0 when every run completed and every task run was recorded, 1 otherwise, 2 when
PostgreSQL or Redis is not reachable. Everything it started is stopped and deleted at the end
(``--keep`` keeps the logs and outputs folder). Not collected by pytest: no ``test_`` prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.scale._topology import DEPLOYMENT, POSTGRES_URL, Topology, topology

REDIS_URL = os.environ.get("AIOP_TEST_SCALE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
#: How long the task-run recorder may take to catch up after the last flow run finished.
RECORDER_GRACE_S = 60.0


def _reachable(url: str, default_port: int) -> str | None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return None
    except OSError as exc:
        return f"{host}:{port} is not reachable ({exc})"


async def _submit_all(top: Topology, runs: int, rows: int, partitions: int) -> list[Any]:
    from prefect.deployments import run_deployment

    async def one(i: int) -> Any:
        folder = top.base / "runs" / f"load-{i:02d}"
        return await run_deployment(  # type: ignore[misc]  # the async form, in async code
            DEPLOYMENT,
            parameters={
                "rows": rows,
                "seed": 1000 + i,
                "partitions": partitions,
                "output": str(folder / "out"),
                "work_dir": str(folder / "work"),
            },
            flow_run_name=f"load-{i:02d}",
            timeout=0,
        )

    return list(await asyncio.gather(*(one(i) for i in range(runs))))


async def _wait_final(client: Any, ids: list[Any], timeout_s: float, started: float) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    reported = -1
    while True:
        flow_runs = [await client.read_flow_run(run_id) for run_id in ids]
        done = sum(1 for r in flow_runs if r.state is not None and r.state.is_final())
        if done != reported:
            print(f"  {time.monotonic() - started:6.1f} s: {done}/{len(ids)} runs finished")
            reported = done
        if done == len(ids) or time.monotonic() > deadline:
            return flow_runs
        await asyncio.sleep(1.0)


async def _task_runs(client: Any, ids: list[Any]) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found: list[Any] = []
    flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=ids))
    while True:
        page = await client.read_task_runs(flow_run_filter=flow_runs, limit=200, offset=len(found))
        found.extend(page)
        if len(page) < 200:
            return found


async def _measure(top: Topology, args: argparse.Namespace) -> int:
    from prefect.client.orchestration import get_client

    steps_per_run = 4 + args.partitions  # ingest, validate, K transforms, aggregate, report
    print(f"submitting {args.runs} runs at once ({args.rows} rows, {args.partitions} partitions)")
    started = time.monotonic()
    created = await _submit_all(top, args.runs, args.rows, args.partitions)
    submitted_s = time.monotonic() - started
    ids = [r.id for r in created]
    async with get_client() as client:
        flow_runs = await _wait_final(client, ids, args.timeout, started)
        wall_s = time.monotonic() - started

        completed = [r for r in flow_runs if r.state is not None and r.state.is_completed()]
        steps_in_summaries = 0
        for r in completed:
            summary = top.base / "runs" / r.name / "out" / "summary.json"
            steps_in_summaries += len(json.loads(summary.read_text(encoding="utf-8"))["steps"])
        expected = len(completed) * steps_per_run

        recorder_started = time.monotonic()
        while True:
            task_runs = await _task_runs(client, [r.id for r in completed])
            final = [t for t in task_runs if t.state is not None and t.state.is_final()]
            if len(final) >= expected or time.monotonic() - recorder_started > RECORDER_GRACE_S:
                break
            await asyncio.sleep(0.5)
        recorder_lag_s = time.monotonic() - recorder_started

    by_worker = Counter(r.labels.get("prefect.worker.name", "?") for r in flow_runs)
    states = Counter(r.state_name for r in flow_runs)
    task_states = Counter(t.state_name for t in task_runs)
    durations = sorted(
        r.total_run_time.total_seconds() for r in completed if r.total_run_time is not None
    )
    ok = len(completed) == args.runs and len(final) == expected == steps_in_summaries

    print(f"flow runs:        {dict(states)} of {args.runs} submitted in {submitted_s:.1f} s")
    print(f"by worker:        {dict(sorted(by_worker.items()))}")
    print(f"wall time:        {wall_s:.1f} s from first submission to last run finished")
    if durations:
        median = durations[len(durations) // 2]
        print(f"run time:         median {median:.1f} s, max {durations[-1]:.1f} s")
    print(
        f"throughput:       {len(completed) / wall_s * 60:.1f} runs/min,"
        f" {len(final) / wall_s:.2f} task runs/s"
    )
    print(
        f"task runs:        {len(final)} recorded final / {expected} expected"
        f" ({steps_per_run} per run; summaries list {steps_in_summaries});"
        f" states {dict(task_states)}; recorder caught up {recorder_lag_s:.1f} s after the last run"
    )
    print("result:           " + ("OK, none lost" if ok else "FAILED"))
    if not ok:
        for r in flow_runs:
            if r not in completed:
                message = (r.state.message if r.state else "") or ""
                print(f"  {r.name}: {r.state_name}: {message[:300]}")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.scale.load_benchmark", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=20, help="runs submitted at once (20)")
    parser.add_argument("--rows", type=int, default=2000, help="sample rows per run (2000)")
    parser.add_argument("--partitions", type=int, default=2, help="partitions per run (2)")
    parser.add_argument("--workers", type=int, default=2, help="workers (2)")
    parser.add_argument("--concurrency", type=int, default=4, help="engine limit slots (4)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for all runs (900)")
    parser.add_argument("--keep", action="store_true", help="keep the logs and outputs folder")
    args = parser.parse_args(argv)

    for name, url, port in (("PostgreSQL", POSTGRES_URL, 5432), ("Redis", REDIS_URL, 6379)):
        problem = _reachable(url, port)
        if problem is not None:
            print(f"error: {name} at {problem}; start it and run again", file=sys.stderr)
            return 2

    base = Path(tempfile.mkdtemp(prefix="aiop-load-"))
    # Before Prefect is imported: this process's Prefect files stay in the benchmark's folder.
    (base / "homes" / "client").mkdir(parents=True)
    os.environ["PREFECT_HOME"] = str(base / "homes" / "client")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    names = [f"w{i + 1}" for i in range(args.workers)]
    per_worker = -(-args.runs // args.workers)  # a fair share each, so every worker gets runs
    try:
        print(f"starting the topology in {base} (server on PostgreSQL, {args.workers} workers)")
        with topology(
            base,
            redis_url=REDIS_URL,
            workers=names,
            worker_limit=per_worker,
            concurrency=args.concurrency,
        ) as top:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings({PREFECT_API_URL: top.api_url}):
                return asyncio.run(_measure(top, args))
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
