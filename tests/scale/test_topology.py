"""The scale-out topology on this machine's services: a Prefect server on PostgreSQL, a process work
pool with two workers, breaker state in Redis (docs/guides/scale-out.md).

Needs PostgreSQL (``AIOP_TEST_POSTGRES_URL``, default ``postgresql://root@127.0.0.1:5432/postgres``)
and Redis (``AIOP_TEST_SCALE_REDIS_URL``, default database 14 of ``127.0.0.1:6379``): skips with the
reason without them, fails in CI (``AIOP_REQUIRE_SERVICES=1``). About two minutes for the module.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.scale._topology import (
    BREAKER,
    DEPLOYMENT,
    LIMIT_NAME,
    POOL,
    POSTGRES_URL,
    Topology,
    breaker_state,
    delete_breaker_keys,
    topology,
)
from tests.services import require_postgres, require_redis

pytestmark = pytest.mark.slow

REDIS_URL = os.environ.get("AIOP_TEST_SCALE_REDIS_URL", "redis://127.0.0.1:6379/14")
ROWS = 2000
PARTITIONS = 2
STEPS_PER_RUN = 4 + PARTITIONS  # ingest, validate, transform-0..K-1, aggregate, report
RUNS = 4
RUN_TIMEOUT_S = 150.0


@pytest.fixture(scope="module")
def scale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """The topology, with the test process's Prefect client pointed at its server."""
    require_postgres(POSTGRES_URL)
    require_redis(REDIS_URL)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    base = tmp_path_factory.mktemp("scale")
    # --limit 2: a worker runs at most two of the four runs at once, so both workers get some.
    with (
        topology(base, redis_url=REDIS_URL, worker_limit=2) as top,
        temporary_settings({PREFECT_API_URL: top.api_url}),
    ):
        yield top


def submit(
    top: Topology,
    name: str,
    *,
    seed: int,
    queue: str | None = None,
    env: dict[str, str] | None = None,
) -> Any:
    """Create a flow run of the deployment with its own output and work folders; don't wait."""
    from prefect.deployments import run_deployment

    folder = top.base / "runs" / name
    # A run's job variables replace the deployment's env as a whole: keep the limit's name.
    job_variables = {"env": {"AIOP_ENGINE_LIMIT": LIMIT_NAME, **env}} if env else None
    return run_deployment(
        DEPLOYMENT,
        parameters={
            "rows": ROWS,
            "seed": seed,
            "partitions": PARTITIONS,
            "output": str(folder / "out"),
            "work_dir": str(folder / "work"),
        },
        flow_run_name=name,
        work_queue_name=queue,
        job_variables=job_variables,
        timeout=0,
    )


def wait_final(top: Topology, run_ids: list[Any], timeout_s: float = RUN_TIMEOUT_S) -> list[Any]:
    """The flow runs, once all are in a final state."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(run_id) for run_id in run_ids]
            if all(r.state is not None and r.state.is_final() for r in runs):
                return runs
            if time.monotonic() > deadline:
                states = {r.name: r.state_name for r in runs}
                raise AssertionError(
                    f"runs not finished within {timeout_s:g} s: {states}\n{logs(top)}"
                )
            time.sleep(1.0)


def worker_of(run: Any) -> str | None:
    """The name of the worker that ran ``run`` (a label the worker puts on the run)."""
    return run.labels.get("prefect.worker.name")  # type: ignore[no-any-return]


def summary_of(top: Topology, name: str) -> dict[str, Any]:
    path = top.base / "runs" / name / "out" / "summary.json"
    assert path.exists(), f"{name}: no summary.json at {path}\n{logs(top)}"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def logs(top: Topology) -> str:
    return "\n".join(f"--- {name} log ---\n{top.log(name)}" for name in ["server", *top.workers])


@pytest.fixture(scope="module")
def spread(scale: Topology) -> list[Any]:
    """RUNS healthy runs submitted together to the pool's default queue, finished."""
    names = [f"spread-{i}" for i in range(RUNS)]
    created = [submit(scale, name, seed=100 + i) for i, name in enumerate(names)]
    return wait_final(scale, [r.id for r in created])


class TestDeploy:
    def test_deploy_created_the_pool_the_limit_and_the_deployment(self, scale: Topology) -> None:
        assert f"work pool '{POOL}' (process): created" in scale.deploy_output
        assert f"concurrency limit '{LIMIT_NAME}' (4 slots): created" in scale.deploy_output
        assert f"deployment '{DEPLOYMENT}' (pool {POOL}): created" in scale.deploy_output


class TestRuns:
    def test_every_run_completes_with_correct_outputs(
        self, scale: Topology, spread: list[Any]
    ) -> None:
        states = {r.name: (r.state_name, r.state.message if r.state else None) for r in spread}
        assert all(r.state is not None and r.state.is_completed() for r in spread), (
            f"{states}\n{logs(scale)}"
        )
        for run in spread:
            summary = summary_of(scale, run.name)
            assert summary["input_rows"] == ROWS, summary
            assert summary["input_rows"] == summary["valid_rows"] + summary["quarantined_rows"]
            assert summary["valid_rows"] > 0
            assert [s["state"] for s in summary["steps"]] == ["Completed"] * STEPS_PER_RUN
            with Path(summary["aggregates"]).open(newline="", encoding="utf-8") as handle:
                groups = list(csv.DictReader(handle))
            assert groups, f"{run.name}: aggregates.csv has no rows"
            assert sum(int(float(g["row_count"])) for g in groups) == summary["valid_rows"]

    def test_runs_are_spread_over_both_workers(self, spread: list[Any]) -> None:
        by_worker = {r.name: worker_of(r) for r in spread}
        assert set(by_worker.values()) == {"w1", "w2"}, by_worker

    def test_every_step_takes_a_slot_of_the_engine_limit(
        self, scale: Topology, spread: list[Any]
    ) -> None:
        from prefect.client.orchestration import get_client
        from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

        expected = len(spread) * STEPS_PER_RUN
        acquired = 0
        deadline = time.monotonic() + 10  # events are persisted in batches
        with get_client(sync_client=True) as client:
            limit = client.read_global_concurrency_limit_by_name(LIMIT_NAME)
            while acquired < expected and time.monotonic() < deadline:
                page = client.read_events(
                    EventFilter(
                        event=EventNameFilter(name=["prefect.concurrency-limit.acquired"]),
                        resource=EventResourceFilter(id=[f"prefect.concurrency-limit.{limit.id}"]),
                    ),
                    limit=50,  # the server's maximum page; `total` counts them all
                )
                acquired = page.total
                time.sleep(1.0)
        assert acquired >= expected, f"{acquired} slot acquisitions for {expected} steps"


class TestSharedBreaker:
    def test_a_breaker_opened_by_one_workers_run_rejects_the_other_workers_steps(
        self, scale: Topology
    ) -> None:
        delete_breaker_keys(REDIS_URL)
        policy = {"AIOP_BREAKER_FAIL_MAX": "2", "AIOP_BREAKER_RESET_TIMEOUT": "300"}
        try:
            # On w1 (its own queue): the engine is down for every step; two attempts open it.
            faulty = submit(
                scale,
                "engine-down",
                seed=1,
                queue="w1",
                env={
                    "AIOP_CHAOS": "kind=engine-down,seconds=3600",
                    "AIOP_RETRY_ATTEMPTS": "2",
                    "AIOP_RETRY_BACKOFF_S": "0",
                    **policy,
                },
            )
            (down,) = wait_final(scale, [faulty.id])
            state_after_down = breaker_state(REDIS_URL)

            # On w2: nothing wrong there, but the shared breaker is open: fail fast, no attempt.
            started = time.monotonic()
            healthy = submit(
                scale, "rejected", seed=2, queue="w2", env={"AIOP_RETRY_ATTEMPTS": "1", **policy}
            )
            (rejected,) = wait_final(scale, [healthy.id])
            elapsed = time.monotonic() - started
        finally:
            delete_breaker_keys(REDIS_URL)

        assert (worker_of(down), worker_of(rejected)) == ("w1", "w2")
        assert down.state is not None and down.state.is_failed(), logs(scale)
        assert summary_of(scale, "engine-down")["error"]["class"] == "EngineUnavailableError"
        assert state_after_down == "open", f"breaker state in Redis: {state_after_down!r}"

        assert rejected.state is not None and rejected.state.is_failed(), logs(scale)
        error = summary_of(scale, "rejected")["error"]
        assert error["class"] == "CircuitOpenError", error
        assert error["step"] == "ingest" and BREAKER in error["message"], error
        assert BREAKER in (rejected.state.message or ""), rejected.state.message
        assert elapsed < 60, f"the rejected run took {elapsed:.1f} s; it should fail fast"
