"""One trace per pipeline run on the local runner, read with the SDK's in-memory exporter as a tree.

Each test runs the real flow (Prefect's spans and the platform's) against the session's Prefect
server; the spans go through the platform's masking exporter into the SDK's own in-memory
exporter (the ``spans`` fixture).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from adapters import StepSpec
from adapters.breakers.breaker import get_breaker, reset_breakers
from adapters.breakers.policy import BreakerPolicy
from adapters.retry_policy import RetryPolicy
from adapters.selection import resolve_runner
from adapters.settings import Settings
from flows.data_pipeline.flow import data_pipeline
from flows.runtime.step_task import execute_step, run_step
from tests.spans import SpanStore, SpanTree, span_id, text_of

pytestmark = pytest.mark.prefect

#: A multi-line secret: no line of it may appear anywhere on the trace.
PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvuNMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ\n"
    "-----END PRIVATE KEY-----"
)


def _settings(tmp_path: Path) -> Settings:
    return Settings(backend="local", retry_backoff_s=0, retry_jitter=0, cache_dir=tmp_path / "c")


@pytest.fixture(scope="module")
def two_runs(
    _span_store: Any, prefect_api_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A pipeline run whose validate step fails once with a transient exit, then the same run
    again (everything cached); the spans of each."""
    spans = SpanStore(_span_store)
    tmp_path = tmp_path_factory.mktemp("traced")
    spans.finished()
    _span_store.clear()
    kwargs: dict[str, Any] = {
        "rows": 1000,
        "seed": 3,
        "partitions": 2,
        "output": str(tmp_path / "out"),
        "work_dir": str(tmp_path / "work"),
        "backend": "local",
        "settings": _settings(tmp_path),
    }
    first = asyncio.run(data_pipeline(**kwargs, chaos="step=validate,kind=transient-exit,times=1"))
    first_tree = spans.tree()
    _span_store.clear()
    second = asyncio.run(data_pipeline(**kwargs))
    again = spans.tree()
    _span_store.clear()
    return {"first": first, "second": second, "tree": first_tree, "again": again}


def _steps(tree: SpanTree) -> dict[str, Any]:
    return {s.attributes["aiop.step.name"]: s for s in tree.spans if s.name.startswith("step ")}


def test_a_pipeline_run_is_one_trace_flow_step_task_attempt(two_runs: dict[str, Any]) -> None:
    tree: SpanTree = two_runs["tree"]
    assert len(tree.trace_ids()) == 1, tree.render()
    assert two_runs["first"]["trace_id"] in tree.trace_ids()  # the summary names the trace
    assert two_runs["first"]["trace_url"] == (
        f"http://traces.example/trace/{two_runs['first']['trace_id']}"
    )
    [root] = [s for s in tree.spans if s.parent is None]
    assert root.attributes["prefect.run.type"] == "flow"  # Prefect's flow-run span is the root
    assert root.attributes["aiop.flow.name"] == "data-pipeline"
    steps = _steps(tree)
    assert sorted(steps) == [
        "aggregate",
        "ingest",
        "report",
        "transform-0",
        "transform-1",
        "validate",
    ]
    for name, step in steps.items():
        assert tree.parent(step) is root, tree.render()
        [task] = tree.children(step)  # Prefect's task-run span, under the step's
        assert task.attributes["prefect.run.type"] == "task"
        assert task.name.startswith(f"{name} [")
        for attempt in tree.children(task):
            assert attempt.name.startswith("attempt ")
            assert attempt.attributes["aiop.step.name"] == name
            assert attempt.attributes["aiop.backend"] == "local"
            assert attempt.attributes["aiop.breaker.name"] == "engine:local"
            assert attempt.attributes["aiop.breaker.state"] == "closed"
            assert attempt.attributes["aiop.agent.name"] == step.attributes["aiop.agent.name"]
        assert step.attributes["aiop.capability"] == name.partition("-")[0]
        assert step.attributes["aiop.step.outcome"] == "Completed"
        assert step.attributes["aiop.step.cached"] is False
        assert step.status.status_code.name == "OK"


def test_a_retried_attempt_is_a_failed_span_with_its_exit_code_and_error_class(
    two_runs: dict[str, Any],
) -> None:
    tree: SpanTree = two_runs["tree"]
    validate = _steps(tree)["validate"]
    [task] = tree.children(validate)
    first, second = tree.children(task)
    assert (first.name, second.name) == ("attempt 1", "attempt 2")
    assert first.attributes["process.exit.code"] == 75
    assert first.attributes["error.type"] == "StepFailedError"
    assert first.attributes["aiop.error.transient"] is True
    assert first.status.status_code.name == "ERROR"
    assert [e.name for e in first.events] == ["exception"]
    assert second.attributes["process.exit.code"] == 0 and second.status.status_code.name == "OK"
    assert "Retrying" in [e.name for e in task.events]  # Prefect's state events on its span
    assert validate.attributes["aiop.step.attempts"] == 2


def test_step_spans_carry_the_rows_each_step_reports(two_runs: dict[str, Any]) -> None:
    steps = _steps(two_runs["tree"])
    summary = two_runs["first"]
    assert steps["ingest"].attributes["aiop.rows.out"] == 1000
    assert steps["validate"].attributes["aiop.rows.in"] == summary["input_rows"]
    assert steps["validate"].attributes["aiop.rows.out"] == summary["valid_rows"]
    assert steps["validate"].attributes["aiop.rows.quarantined"] == summary["quarantined_rows"]
    parts = [steps[f"transform-{i}"].attributes["aiop.rows.out"] for i in range(2)]
    assert sum(parts) == summary["valid_rows"]
    assert "aiop.rows.out" not in steps["report"].attributes


def test_a_cached_rerun_shows_cached_steps_without_attempts(two_runs: dict[str, Any]) -> None:
    tree: SpanTree = two_runs["again"]
    assert len(tree.trace_ids()) == 1
    assert tree.trace_ids() != two_runs["tree"].trace_ids()  # one trace per run
    for step in _steps(tree).values():
        assert step.attributes["aiop.step.cached"] is True
        assert step.attributes["aiop.step.outcome"] == "Cached"
        assert step.attributes["aiop.step.attempts"] == 0
        [task] = tree.children(step)
        assert tree.children(task) == []  # nothing ran
        assert "Cached" in [e.name for e in task.events]


async def test_an_open_breaker_refusal_before_start_is_a_rejected_step_span(
    spans: SpanStore, prefect_api_url: str, tmp_path: Path
) -> None:
    reset_breakers()
    breaker = get_breaker(
        "engine:local", default_policy=BreakerPolicy(fail_max=1, reset_timeout=300)
    )
    breaker._cb.open()  # as after an engine failure
    spec = StepSpec(
        name="refused", image="python:3.12-slim", args=["python", "-c", f"# {tmp_path}"]
    )

    @flow
    async def refused_run() -> str:
        outcome = await execute_step(spec, "local", retry=RetryPolicy(attempts=1))
        return outcome.state

    try:
        assert await refused_run() == "Failed"
    finally:
        reset_breakers()
    tree = spans.tree()
    step = tree.one("step refused")
    assert step.attributes["aiop.step.outcome"] == "Rejected"
    assert step.attributes["error.type"] == "CircuitOpenError"
    assert step.status.status_code.name == "ERROR"
    [event] = [e for e in step.events if e.name == "aiop.breaker.rejected"]
    assert event.attributes["aiop.breaker.name"] == "engine:local"
    assert event.attributes["aiop.breaker.probe_at"] > 0
    assert tree.children(step) == []  # no task run was created


async def test_the_step_process_gets_traceparent_of_its_attempt_and_no_secret_reaches_a_span(
    spans: SpanStore, prefect_api_url: str, tmp_path: Path
) -> None:
    """The local runner gives the step TRACEPARENT (its attempt span is the parent); a step that
    prints its multi-line secret and fails leaves no line of it on any span; the environment
    variable is not part of the spec, so the cache key is unchanged and a re-run is Cached."""
    program = (
        "import os, sys\n"
        "print(os.environ.get('TRACEPARENT'))\n"
        "print('BAGGAGE' in os.environ)\n"
        f"sys.stderr.write(os.environ['KEY'] + '\\n')\n"
        f"sys.exit(0 if os.path.exists({str(tmp_path / 'ok')!r}) else 3)\n"
    )
    spec = StepSpec(
        name="prints-context",
        image="python:3.12-slim",
        args=["python", "-c", program],
        secrets={"KEY": PEM},
    )
    settings = _settings(tmp_path)

    @flow
    async def once() -> Any:
        return await execute_step(spec, "local", settings=settings, runner=resolve_runner("local"))

    failed = await once()
    assert failed.state == "Failed"
    (tmp_path / "ok").touch()
    passed = await once()
    assert passed.state == "Completed" and passed.result is not None
    traceparent, baggage = passed.result.stdout.split()
    assert baggage == "False"
    tree = spans.tree()
    attempts = [
        s
        for s in tree.spans
        if s.name == "attempt 1" and s.attributes["aiop.step.name"] == "prints-context"
    ]
    ok = [a for a in attempts if a.attributes.get("process.exit.code") == 0]
    assert len(ok) == 1
    version, trace_id, parent, flags = traceparent.split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    assert trace_id == f"{ok[0].context.trace_id:032x}" and parent == span_id(ok[0])
    assert "TRACEPARENT" not in spec.env
    again = await once()
    assert again.state == "Cached"  # the trace context never entered the cache key
    text = text_of(spans.finished())
    for line in PEM.splitlines():
        assert line not in text, f"a line of the secret is on the trace: {line[:20]}..."
    failed_attempt = next(a for a in attempts if a.attributes.get("process.exit.code") == 3)
    assert failed_attempt.attributes["error.type"] == "StepFailedError"
    assert failed_attempt.attributes["aiop.error.transient"] is False


async def test_prefect_parents_a_task_run_span_under_the_span_current_where_it_is_called(
    spans: SpanStore, prefect_api_url: str, tmp_path: Path
) -> None:
    """The pin the step span rests on (prefect/telemetry/run_telemetry.py, ``_start_span``): the
    task-run span's parent is the span current at the call, not the flow-run span."""
    from adapters import tracing

    spec = StepSpec(name="pinned", image="python:3.12-slim", args=["python", "-c", f"# {tmp_path}"])

    @flow
    async def called_under_a_span() -> None:
        with tracing.tracer().start_as_current_span("caller"):
            await run_step(spec, "local", settings=_settings(tmp_path))

    await called_under_a_span()
    tree = spans.tree()
    [task] = [s for s in tree.spans if s.attributes.get("prefect.run.type") == "task"]
    assert tree.parent(task) is tree.one("caller")


def test_the_summary_json_names_the_trace(two_runs: dict[str, Any]) -> None:
    summary = json.loads(
        (Path(two_runs["second"]["aggregates"]).parent / "summary.json").read_text()
    )
    assert summary["trace_id"] in two_runs["again"].trace_ids()


async def test_on_the_stand_in_engine_the_engines_spans_sit_under_each_steps_attempt(
    spans: SpanStore, prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flow run's one engine session, two steps at once: each request's traceparent is its own
    attempt (per request, not per session), the session's own requests are the flow run's."""
    from adapters.selection import engine_for_run
    from tests.fakes.session import standin_session

    with standin_session(monkeypatch) as engine:
        engine.span_exporter = spans._exporter

        @flow
        async def on_dagger() -> list[str]:
            async with engine_for_run("dagger", provision_timeout_s=5) as choice:
                assert choice.backend == "dagger"
                runner = resolve_runner("dagger", provision_timeout_s=5)
                specs = [
                    StepSpec(name=n, image="alpine:3.20", args=["echo", n], timeout_s=10)
                    for n in ("left", "right")
                ]
                outcomes = await asyncio.gather(
                    *(execute_step(s, "dagger", runner=runner) for s in specs)
                )
                return [o.state for o in outcomes]

        assert await on_dagger() == ["Completed", "Completed"]
    tree = spans.tree()
    [root] = [s for s in tree.spans if s.parent is None]
    assert root.attributes["prefect.run.type"] == "flow"
    for name in ("left", "right"):
        step = tree.one(f"step {name}")
        [task] = tree.children(step)
        [attempt] = tree.children(task)
        assert attempt.attributes["aiop.backend"] == "dagger"
        engine_spans = {s.name for s in tree.children(attempt)}
        assert {"Container.from", "Container.withExec", "Container.sync"} <= engine_spans
    mine = {span_id(s) for s in tree.spans}
    traced = [q for q in engine.queries if q.traceparent is not None]
    assert traced and {q.parent_span_id for q in traced} <= mine
    connect = [q for q in engine.queries if "__schema" in q.text]
    assert connect and all(q.parent_span_id == span_id(root) for q in connect)


async def test_an_attempt_an_open_breaker_refuses_waits_for_the_probe_in_a_span(
    spans: SpanStore, prefect_api_url: str, tmp_path: Path
) -> None:
    """The breaker refuses the first attempt (an event on it), the attempt waits for the probe
    time in a ``breaker wait`` span, and the retry runs."""
    reset_breakers()
    breaker = get_breaker(
        "engine:local", default_policy=BreakerPolicy(fail_max=1, reset_timeout=2.0)
    )
    breaker._cb.open()
    spec = StepSpec(name="waits", image="python:3.12-slim", args=["python", "-c", f"# {tmp_path}"])

    @flow
    async def waited() -> Any:
        policy = RetryPolicy(attempts=2, backoff_s=0, jitter=0)
        return await execute_step(spec, "local", retry=policy, settings=_settings(tmp_path))

    try:
        outcome = await waited()
    finally:
        reset_breakers()
    assert outcome.state == "Completed" and outcome.attempts == 2
    tree = spans.tree()
    step = tree.one("step waits")
    assert step.attributes["aiop.breaker.wait_s"] > 0
    [task] = tree.children(step)
    first, second = tree.children(task)
    assert first.attributes["error.type"] == "CircuitOpenError"
    assert first.attributes["aiop.breaker.state"] == "open"
    [rejected] = [e for e in first.events if e.name == "aiop.breaker.rejected"]
    assert rejected.attributes["aiop.breaker.name"] == "engine:local"
    [wait] = tree.children(first)
    assert wait.name == "breaker wait" and wait.attributes["aiop.breaker.wait_s"] > 0
    assert second.attributes["process.exit.code"] == 0
    assert second.attributes["aiop.breaker.state"] in {"open", "half-open"}  # the probe
