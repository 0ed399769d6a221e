"""An llm agent end to end against the stand-in engine: the CLI, retries, the cache, secrecy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow

from adapters.dagger.runner import DaggerRunner
from adapters.errors import BudgetExceededError
from adapters.ownership import write_owned_file
from adapters.settings import load_settings
from agents import AgentManager
from flows.runtime.agent_run import run_agent
from flows.runtime.llm_task import llm_cache_key
from tests.agents.conftest import write_definition
from tests.agents.test_cli import cli
from tests.fakes.dagger_engine import FakeDaggerEngine
from tests.fakes.dagger_llm import (
    EnvView,
    ProviderFailure,
    Reply,
    read_input,
    requests_until_the_engine_gives_up,
    save_file,
)
from tests.fakes.session import standin_session

#: A multi-line key: every line of it must stay out of what the platform prints and stores.
KEY = "sk-ant-first-line-0123456789\nsecond-line-of-the-key-abcdef"


def summary_from_input(view: EnvView) -> str:
    counts = json.loads(read_input(view, "report", "summary.json"))
    return f"{counts['input_rows']} rows in, {counts['quarantined_rows']} quarantined.\n"


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaggerEngine]:
    with standin_session(monkeypatch) as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        fake.model.valid_keys = {KEY}
        yield fake


@pytest.fixture
def report(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    counts = {"input_rows": 1000, "quarantined_rows": 7}
    write_owned_file(folder, "summary.json", json.dumps(counts).encode())
    return folder


def test_python_m_agents_run_summarize_llm_writes_the_summary_and_never_shows_the_key(
    prefect_api_url: str, engine: FakeDaggerEngine, report: Path
) -> None:
    engine.model.script = [
        Reply("Writing it.", (save_file("summary", summary_from_input),), 400, 60),
        Reply("Done."),
    ]
    done = cli(
        "run",
        "summarize-llm",
        "--param",
        f"report={report}",
        PREFECT_API_URL=prefect_api_url,
        **engine.session_env(),
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    assert (report / "summary.md").read_text() == "1000 rows in, 7 quarantined.\n"
    assert "Writing it." in done.stdout
    assert "model claude-sonnet-4-5: 1 API calls, 460 tokens" in done.stderr
    assert f"output summary -> {report / 'summary.md'}" in done.stderr
    assert engine.model.calls[0].key == KEY  # the engine read it from its client's environment
    for line in KEY.splitlines():
        assert line not in console


def test_python_m_agents_run_writes_a_file_output_into_a_folder_that_does_not_exist_yet(
    prefect_api_url: str, engine: FakeDaggerEngine, report: Path, tmp_path: Path
) -> None:
    """Issue 26: the first thing a user writes after the shipped example: the summary into a new
    folder. It is written and recorded in that folder's manifest (on main: refused after the
    model had run and been paid for)."""
    definitions = tmp_path / "agents"
    write_definition(
        definitions,
        {
            "name": "summarize-elsewhere",
            "kind": "llm",
            "description": "Summarizes into a folder of its own.",
            "capabilities": ["summarize-elsewhere"],
            "parameters": {
                "report": {"description": "result folder"},
                "notes": {"description": "where the summary goes"},
            },
            "llm": {
                "model": "claude-sonnet-4-5",
                "prompt": "Summarize.",
                "inputs": {
                    "report": {"kind": "directory", "value": "{report}", "description": "r"}
                },
                "outputs": {
                    "summary": {"kind": "file", "path": "{notes}/summary.md", "description": "s"}
                },
            },
            "secrets": ["ANTHROPIC_API_KEY"],
        },
    )
    engine.model.script = [Reply("Saving.", (save_file("summary", summary_from_input),))]
    notes = tmp_path / "notes" / "2026"
    done = cli(
        "run", "summarize-elsewhere", "--param", f"report={report}", "--param", f"notes={notes}",
        agents_path=definitions, PREFECT_API_URL=prefect_api_url, **engine.session_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (notes / "summary.md").read_text() == "1000 rows in, 7 quarantined.\n"
    assert set(json.loads((notes / ".aiop-manifest.json").read_text())["files"]) == {"summary.md"}
    assert sorted(p.name for p in notes.iterdir()) == [".aiop-manifest.json", "summary.md"]


def test_python_m_agents_run_summarize_llm_stops_at_max_tokens_with_its_real_usage(
    prefect_api_url: str, engine: FakeDaggerEngine, report: Path
) -> None:
    """summarize-llm declares an output: on the engine, asking its LLM for the bindings before a
    step would run the whole loop inside that check, past max_tokens (60,000) and unreported."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from tests.fakes.dagger_llm import ToolCall

    look = ToolCall("ls", lambda v: "summary.json aggregates.csv")
    engine.model.script = [Reply("Reading.", (look,), 20_000, 5_000)] * 3
    engine.model.script += [Reply("Saving.", (save_file("summary", summary_from_input),))]
    done = cli(
        "run",
        "summarize-llm",
        "--param",
        f"report={report}",
        PREFECT_API_URL=prefect_api_url,
        **engine.session_env(),
    )
    assert done.returncode != 0
    assert "75000 tokens after 3 model API call(s), past its budget of max_tokens=60000" in (
        done.stderr
    ), done.stderr
    assert len(engine.model.answered) == 3 and not (report / "summary.md").exists()

    async def artifact() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["llm-usage-summarize-llm"])
                ),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
        return str(found[0].data)

    usage = asyncio.run(artifact())
    assert "stopped at `max_tokens`" in usage, usage
    assert "| API calls | 3 | 8 |" in usage
    assert "| tokens (counted, all calls) | 75000 | 60000 |" in usage


@pytest.mark.parametrize("shared_session", [False, True], ids=["own-session", "runs-session"])
def test_a_rate_limit_is_retried_and_a_resumed_run_does_not_pay_twice(
    prefect_api_url: str,
    engine: FakeDaggerEngine,
    report: Path,
    tmp_path: Path,
    shared_session: bool,
) -> None:
    """The engine caches ``llm`` per session and keeps a failed loop's error: the retry (a
    Prefect retry of run_llm_step) must be a new branch, or it gets the 429 back unasked."""
    definitions = tmp_path / "agents"
    write_definition(
        definitions,
        {
            "name": "summarize-fast-retry",
            "kind": "llm",
            "description": "Summarizes, retrying at once.",
            "capabilities": ["summarize-test"],
            "parameters": {"report": {"description": "result folder"}},
            "llm": {
                "model": "claude-sonnet-4-5",
                "prompt": "Summarize.",
                "inputs": {
                    "report": {"kind": "directory", "value": "{report}", "description": "r"}
                },
                "outputs": {
                    "summary": {"kind": "file", "path": "{report}/summary.md", "description": "s"}
                },
            },
            "secrets": ["ANTHROPIC_API_KEY"],
            "retry": {"attempts": 2, "backoff_s": 0, "jitter": 0},
        },
    )
    engine.model.script = [
        ProviderFailure(429, "rate_limit_error", "rate limited"),
        Reply("Saving.", (save_file("summary", summary_from_input),)),
    ]

    @flow
    async def twice() -> list[str]:
        manager = AgentManager.from_paths([str(definitions)])
        states = []
        async with contextlib.AsyncExitStack() as stack:
            if shared_session:  # as the pipeline's --summarize runs on the run's session
                await stack.enter_async_context(DaggerRunner(provision_timeout_s=5).session())
            for _ in range(2):
                outcome = await run_agent(manager, "summarize-test", {"report": str(report)})
                assert outcome.error is None, outcome.error
                states.append(f"{outcome.state}:{outcome.attempts}")
        return states

    assert asyncio.run(twice()) == ["Completed:2", "Cached:0"]
    # The 429 (the engine retried it itself first), then the answer to the Prefect retry; the
    # cached run paid nothing.
    assert len(engine.model.calls) == requests_until_the_engine_gives_up(retried=True) + 1
    assert len(engine.model.answered) == 1
    assert (report / "summary.md").read_text() == "1000 rows in, 7 quarantined.\n"


def test_a_budget_exceeded_fails_once_without_retries(
    prefect_api_url: str, engine: FakeDaggerEngine, report: Path
) -> None:
    from tests.fakes.dagger_llm import ToolCall

    engine.model.script = [Reply("More.", (ToolCall("ls", lambda v: "x"),), 10, 1)] * 20

    @flow
    async def once() -> BaseException | None:
        manager = AgentManager.from_paths()
        outcome = await run_agent(manager, "summarize-llm", {"report": str(report)})
        return outcome.error

    error = asyncio.run(once())
    assert isinstance(error, BudgetExceededError)
    assert len(engine.model.calls) == 8  # summarize-llm's max_api_calls, one attempt only


def test_the_cache_key_holds_no_key_value(report: Path) -> None:
    from agents.llm_agent import llm_step_spec

    agent = AgentManager.from_paths().get("summarize-llm")
    spec = llm_step_spec(agent, {"report": str(report)})
    os.environ["ANTHROPIC_API_KEY"] = "one-key-value"
    try:
        first = llm_cache_key(None, {"spec": spec})
        os.environ["ANTHROPIC_API_KEY"] = "another-key-value"
        assert llm_cache_key(None, {"spec": spec}) == first  # the value never enters the key
    finally:
        del os.environ["ANTHROPIC_API_KEY"]
    assert "key-value" not in json.dumps(spec.model_dump())


def test_summarize_writes_summary_md_on_the_runs_one_engine_session(
    prefect_api_url: str, engine: FakeDaggerEngine, report: Path
) -> None:
    import logging

    from adapters.dagger.runner import DaggerRunner
    from flows.data_pipeline.summarize import summarize_results

    engine.model.script = [Reply("Saving.", (save_file("summary", summary_from_input),))]

    @flow
    async def pipeline_tail() -> str | None:
        async with DaggerRunner(provision_timeout_s=5).session():
            manager = AgentManager.from_paths()
            done = await summarize_results(
                manager, report, "dagger", logging.getLogger("test"), load_settings()
            )
        assert done.written and done.path == report / "summary.md"
        return None if done.outcome is None else done.outcome.state

    assert asyncio.run(pipeline_tail()) == "Completed"
    assert (report / "summary.md").read_text() == "1000 rows in, 7 quarantined.\n"
    assert engine.sessions == 1  # the run's session, not one of its own


def test_summarize_without_a_key_is_skipped_with_one_line(
    engine: FakeDaggerEngine,
    report: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from flows.data_pipeline.summarize import summarize_results

    monkeypatch.delenv("ANTHROPIC_API_KEY")
    manager = AgentManager.from_paths()
    manager_ready = asyncio.run(
        summarize_results(
            manager, report, "dagger", logging.getLogger("test.summarize"), load_settings()
        )
    )
    assert not manager_ready.written and manager_ready.outcome is None
    lines = [r.getMessage() for r in caplog.records if r.name == "test.summarize"]
    assert len(lines) == 1 and "--summarize skipped" in lines[0], lines
    assert manager_ready.as_summary() == {"written": False, "path": None, "reason": lines[0]}
    assert "ANTHROPIC_API_KEY" in lines[0]
    assert engine.queries == [] and not (report / "summary.md").exists()


def test_the_key_stays_out_of_the_runs_logs_artifacts_results_and_cache_keys(
    prefect_api_url: str, engine: FakeDaggerEngine, report: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )
    from prefect.runtime import flow_run

    engine.model.script = [
        Reply(f"I was given {KEY}.", (save_file("summary", summary_from_input),)),
    ]

    @flow
    async def run() -> tuple[str, str]:
        outcome = await run_agent(
            AgentManager.from_paths(), "summarize-llm", {"report": str(report)}
        )
        assert outcome.error is None, outcome.error
        assert outcome.result is not None
        return str(flow_run.id), outcome.result.model_dump_json() + repr(outcome.llm)

    run_id, result = asyncio.run(run())

    async def stored() -> list[str]:
        from prefect.logging.handlers import APILogHandler

        await APILogHandler.aflush()  # logs go to the server in batches
        async with get_client() as client:
            for _ in range(50):  # the server records what it received in the background
                logs = await client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
                )
                if any("finished in" in log.message for log in logs):
                    break
                await asyncio.sleep(0.1)
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            tasks = await client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id]))
            )
        assert any("Model usage" in str(a.data) for a in artifacts), artifacts
        assert any("model call 1" in log.message for log in logs), [g.message for g in logs]
        return [
            *(str(a.data) for a in artifacts),
            *(log.message for log in logs),
            *(f"{t.cache_key} {t.name}" for t in tasks),
        ]

    texts = [result, *asyncio.run(stored())]
    assert "I was given ***." in result
    for line in KEY.splitlines():
        assert not [t for t in texts if line in t]


def test_the_providers_breaker_opens_on_failures_and_not_on_a_budget(
    prefect_api_url: str,
    engine: FakeDaggerEngine,
    report: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adapters.breakers.breaker import get_breaker
    from adapters.errors import CircuitOpenError, ProviderUnavailableError
    from adapters.retry_policy import RetryPolicy
    from agents.llm_agent import llm_step_spec
    from flows.runtime.llm_task import execute_llm_step
    from tests.fakes.dagger_llm import ToolCall

    monkeypatch.setenv("AIOP_BREAKER_FAIL_MAX", "2")
    agent = AgentManager.from_paths().get("summarize-llm")
    spec = llm_step_spec(agent, {"report": str(report)})
    once = RetryPolicy(attempts=1)
    engine.model.script = [Reply("More.", (ToolCall("ls", lambda v: "x"),), 10, 1)] * 8
    engine.model.script += [ProviderFailure(529, "overloaded_error", "Overloaded")] * 5

    @flow
    async def three() -> list[str]:
        errors = []
        for _ in range(4):
            outcome = await execute_llm_step(spec, retry=once)
            errors.append(type(outcome.error).__name__)
        return errors

    assert asyncio.run(three()) == [
        BudgetExceededError.__name__,  # neutral for the breaker
        ProviderUnavailableError.__name__,
        ProviderUnavailableError.__name__,  # the second failure opens llm:anthropic
        CircuitOpenError.__name__,  # no model call
    ]
    assert len(engine.model.answered) == 8
    refused = len(engine.model.calls) - 8  # two failed runs, each retried by the engine itself
    assert refused == 2 * requests_until_the_engine_gives_up(retried=True)
    assert get_breaker("llm:anthropic").state == "open"
