"""Each request to the engine carries the ``traceparent`` of the span current around it.

The stand-in records every request's trace headers as the engine reads them (per request:
``engine/server/session.go`` ``serveHTTPToClient``, ``engine/client/client.go`` ``ServeHTTP``)
and, given an exporter, emits the engine's spans under them, sampled parents only (Go's default
``ParentBased(AlwaysSample)``). What the real engine does with them was read in its source only.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from adapters import StepSpec, tracing
from adapters.dagger.llm import DaggerLlmRunner
from adapters.dagger.runner import DaggerRunner
from adapters.llm_contract import LlmBudget, LlmInput, LlmOutput, LlmSpec
from adapters.ownership import write_owned_file
from tests.fakes.dagger_engine import FakeDaggerEngine, ReceivedQuery
from tests.fakes.dagger_llm import Reply, ToolCall, save_file
from tests.spans import SpanStore, span_id

KEY = "sk-ant-trace-0123456789abcdef-\nsecond-line-of-the-key"


def _runner() -> DaggerRunner:
    return DaggerRunner(provision_timeout_s=5.0, close_timeout_s=5.0)


def _spec(name: str) -> StepSpec:
    return StepSpec(name=name, image="alpine:3.20", args=["echo", name], timeout_s=10)


def test_a_request_made_outside_any_span_carries_no_traceparent(engine: FakeDaggerEngine) -> None:
    """What every request looks like with tracing off: no span, so no header."""
    asyncio.run(_runner().run(_spec("untraced")))
    assert engine.queries and all(q.traceparent is None for q in engine.queries)


def test_gathered_steps_on_one_session_each_send_their_own_span_per_request(
    engine: FakeDaggerEngine, spans: SpanStore
) -> None:
    """One engine session per flow run, two steps at once: the header is per request, from the
    span current where each request is awaited, not per session."""
    tracer = tracing.tracer()
    runner = _runner()
    ids: dict[str, str] = {}

    async def step(name: str) -> None:
        with tracer.start_as_current_span(f"attempt {name}") as span:
            ids[name] = span_id(span)
            await runner.run(_spec(name))

    async def flow() -> None:
        with tracer.start_as_current_span("flow") as span:
            ids["flow"] = span_id(span)
            async with runner.session():  # opened while the flow's span is current
                await asyncio.gather(step("a"), step("b"))

    asyncio.run(flow())
    assert engine.sessions == 1
    traced = [q for q in engine.queries if q.traceparent is not None]
    assert traced == engine.queries, "a request went without a traceparent"
    assert {q.trace_id for q in traced} == {f"{spans.tree().one('flow').context.trace_id:032x}"}
    by_parent: dict[str | None, list[ReceivedQuery]] = {}
    for query in traced:
        by_parent.setdefault(query.parent_span_id, []).append(query)
    assert set(by_parent) == {ids["flow"], ids["a"], ids["b"]}
    assert any("__schema" in q.text for q in by_parent[ids["flow"]])  # connect-time requests
    for name in ("a", "b"):
        own = by_parent[ids[name]]
        assert any("withExec" in q.text or "sync" in q.text for q in own)
        assert all(json.dumps(q.variables or {}).count(f'"{other}"') == 0
                   for q in own for other in {"a", "b"} - {name})  # fmt: skip
    assert all(q.sampled for q in traced)


def test_the_engine_spans_of_a_step_sit_under_its_attempt_and_a_kept_result_is_marked_cached(
    engine: FakeDaggerEngine, spans: SpanStore
) -> None:
    engine.span_exporter = spans._exporter
    tracer = tracing.tracer()

    async def twice() -> None:
        for attempt in (1, 2):
            with tracer.start_as_current_span(f"attempt {attempt}"):
                await _runner().run(_spec("cached-step"))

    asyncio.run(twice())
    tree = spans.tree()
    for attempt in (1, 2):
        mine = tree.one(f"attempt {attempt}")
        children = {s.name for s in tree.children(mine)}
        assert {"Container.from", "Container.withExec", "Container.sync"} <= children, tree.render()
    cached = [
        s for s in tree.children(tree.one("attempt 2")) if s.attributes.get("dagger.io/dag.cached")
    ]
    assert [s.name for s in cached] == ["Container.sync"]
    assert not any(
        s.attributes.get("dagger.io/dag.cached") for s in tree.children(tree.one("attempt 1"))
    )


@pytest.fixture
def llm_engine(engine: FakeDaggerEngine) -> FakeDaggerEngine:
    engine.model.client_env = {"ANTHROPIC_API_KEY": KEY}
    engine.model.valid_keys = {KEY}
    return engine


def _llm_spec(report: Path, **changes: Any) -> LlmSpec:
    fields: dict[str, Any] = {
        "name": "summarize",
        "model": "claude-sonnet-4-5",
        "prompt": "Summarize the report; the secret word is kumquat.",
        "key_name": "ANTHROPIC_API_KEY",
        "inputs": {"report": LlmInput(kind="directory", value=str(report), description="r")},
        "outputs": {
            "summary": LlmOutput(kind="file", path=str(report / "summary.md"), description="s")
        },
        "budget": LlmBudget(max_api_calls=4, max_tokens=10_000),
    }
    return LlmSpec.model_validate({**fields, **changes})


def _run_llm(spec: LlmSpec) -> Any:
    async def attempt() -> Any:
        with tracing.tracer().start_as_current_span("invoke_agent summarize"):
            return await DaggerLlmRunner(_runner()).run(spec)

    return asyncio.run(attempt())


@pytest.fixture
def report(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    write_owned_file(folder, "summary.json", b'{"rows": 3}')
    return folder


def _script(engine: FakeDaggerEngine) -> None:
    engine.model.script = [
        Reply("Looking.", (ToolCall("ls", lambda v: "summary.json"),), 1000, 50, 200, 30),
        Reply("Saving.", (save_file("summary", "Three rows.\n"),), 1500, 80, 400, 0),
    ]


def test_an_llm_steps_requests_are_unsampled_and_its_model_calls_are_genai_spans(
    llm_engine: FakeDaggerEngine, spans: SpanStore, report: Path
) -> None:
    """Without the agent's content opt-in every request of the run tells the engine not to
    record (its spans of the loop would carry the prompt), while the platform's own spans of the
    model calls are kept."""
    llm_engine.span_exporter = spans._exporter
    _script(llm_engine)
    result = _run_llm(_llm_spec(report))
    tree = spans.tree()
    agent = tree.one("invoke_agent summarize")
    calls = tree.named("chat claude-sonnet-4-5")
    assert [tree.parent(c) for c in calls] == [agent, agent]
    traced = [q for q in llm_engine.queries if "__schema" not in q.text]
    assert traced and all(q.traceparent is not None for q in traced)
    sampled = [q.text[:80] for q in traced if q.sampled is not False]
    assert not sampled, f"requests of the llm step were sampled: {sampled}"
    allowed = {span_id(agent), *(span_id(c) for c in calls)}
    assert {q.parent_span_id for q in traced} <= allowed
    steps = [q for q in traced if "step: step" in q.text]
    assert [q.parent_span_id for q in steps] == [span_id(c) for c in calls]
    assert [s for s in tree.spans if s.name.startswith("LLM.")] == []  # the engine recorded none
    first, second = calls
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.provider.name"] == "anthropic"
    assert first.attributes["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert first.attributes["aiop.llm.call"] == 1 and second.attributes["aiop.llm.call"] == 2
    # Anthropic's input count leaves the cache out; the conventions' input_tokens includes it.
    assert first.attributes["gen_ai.usage.input_tokens"] == 1000 + 200 + 30
    assert second.attributes["gen_ai.usage.input_tokens"] == 1500 + 400
    assert first.attributes["gen_ai.usage.cache_read.input_tokens"] == 200
    assert first.attributes["gen_ai.usage.cache_creation.input_tokens"] == 30
    outputs = [c.attributes["gen_ai.usage.output_tokens"] for c in calls]
    assert sum(outputs) == result.usage.output_tokens == 130
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_call",)
    assert second.attributes["gen_ai.response.finish_reasons"] == ("tool_call",)  # bound the output
    text = json.dumps([dict(s.attributes or {}) for s in tree.spans], default=str)
    assert "kumquat" not in text
    for line in KEY.splitlines():
        assert line not in text


def test_a_model_turn_that_ends_is_a_stop(
    llm_engine: FakeDaggerEngine, spans: SpanStore, report: Path
) -> None:
    llm_engine.model.script = [Reply("All done, nothing to write.", (), 10, 5)]
    _run_llm(_llm_spec(report, outputs={}))
    [call] = spans.tree().named("chat claude-sonnet-4-5")
    assert call.attributes["gen_ai.response.finish_reasons"] == ("stop",)


def test_an_agent_that_opts_in_to_content_lets_the_engine_record_its_loop(
    llm_engine: FakeDaggerEngine, spans: SpanStore, report: Path
) -> None:
    llm_engine.span_exporter = spans._exporter
    _script(llm_engine)
    _run_llm(_llm_spec(report, trace_content=True))
    tree = spans.tree()
    traced = [q for q in llm_engine.queries if "__schema" not in q.text]
    assert all(q.sampled for q in traced)
    calls = tree.named("chat claude-sonnet-4-5")
    steps = [s for s in tree.spans if s.name == "LLM.step"]
    assert len(steps) == 2 and {tree.parent(s).name for s in steps} == {"chat claude-sonnet-4-5"}
    assert len(calls) == 2


def test_a_refused_model_call_is_an_error_span_with_the_platforms_error_class(
    llm_engine: FakeDaggerEngine, spans: SpanStore, report: Path
) -> None:
    from adapters.errors import ProviderUnavailableError
    from tests.fakes.dagger_llm import ProviderFailure

    llm_engine.model.script = [ProviderFailure(529, "overloaded_error", "Overloaded")]
    with pytest.raises(ProviderUnavailableError):
        _run_llm(_llm_spec(report))
    [call] = spans.tree().named("chat claude-sonnet-4-5")
    assert call.attributes["error.type"] == "ProviderUnavailableError"
    assert call.status.status_code.name == "ERROR"
