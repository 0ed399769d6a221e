"""One trace for an llm agent run on the stand-in engine: the step, the fallback to another agent,
each attempt as a GenAI agent span and each model call as a ``chat`` span, and no content."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from adapters.ownership import write_owned_file
from agents import AgentManager
from flows.runtime.agent_run import run_agent
from tests.agents.conftest import write_definition
from tests.fakes.dagger_engine import FakeDaggerEngine
from tests.fakes.dagger_llm import ProviderFailure, Reply, ToolCall, save_file
from tests.fakes.session import standin_session
from tests.spans import SpanStore, SpanTree, text_of

pytestmark = pytest.mark.prefect

ANTHROPIC_KEY = "sk-ant-trace-first-line-0123456789\nsecond-line-of-the-anthropic-key"
OPENAI_KEY = "sk-openai-trace-0123456789abcdef"
PROMPT = "Summarize the report in {report}; the project's code word is kumquat. {note}"


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaggerEngine]:
    with standin_session(monkeypatch) as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        fake.model.valid_keys = {ANTHROPIC_KEY, OPENAI_KEY}
        yield fake


def _agent(name: str, model: str, key: str, *, content: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "llm",
        "description": "Summarizes the report.",
        "capabilities": ["summarize-trace"],
        "parameters": {
            "report": {"description": "result folder"},
            "note": {"description": "a note", "default": ""},
        },
        "llm": {
            "model": model,
            "prompt": PROMPT,
            "inputs": {"report": {"kind": "directory", "value": "{report}", "description": "r"}},
            "outputs": {
                "summary": {"kind": "file", "path": "{report}/summary.md", "description": "s"}
            },
            "budget": {"max_api_calls": 5, "max_tokens": 50_000},
            "trace_content": content,
        },
        "secrets": [key],
        "retry": {"attempts": 1},
    }


def _run(engine: FakeDaggerEngine, definitions: Path, report: Path, note: str = "") -> Any:
    @flow
    async def summarize() -> Any:
        manager = AgentManager.from_paths([str(definitions)])
        return await run_agent(manager, "summarize-trace", {"report": str(report), "note": note})

    return asyncio.run(summarize())


@pytest.fixture
def report(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    write_owned_file(folder, "summary.json", json.dumps({"input_rows": 10}).encode())
    return folder


def test_a_fallback_run_is_one_step_with_both_agents_attempts_and_their_model_calls(
    prefect_api_url: str, engine: FakeDaggerEngine, spans: SpanStore, report: Path, tmp_path: Path
) -> None:
    definitions = tmp_path / "agents"
    write_definition(definitions, _agent("a-claude", "claude-sonnet-4-5", "ANTHROPIC_API_KEY"))
    write_definition(definitions, _agent("b-openai", "gpt-4.1", "OPENAI_API_KEY"))
    engine.model.script = [
        ProviderFailure(529, "overloaded_error", "Overloaded"),  # past the engine's own retries
        Reply("Looking.", (ToolCall("ls", lambda v: "summary.json"),), 800, 40, 100, 0),
        Reply("Saving.", (save_file("summary", "Ten rows.\n"),), 900, 60, 0, 0),
    ]
    outcome = _run(engine, definitions, report)
    assert outcome.error is None and outcome.llm is not None
    tree: SpanTree = spans.tree()
    assert len(tree.trace_ids()) == 1, tree.render()
    step = tree.one("step summarize-trace")
    assert step.attributes["aiop.capability"] == "summarize-trace"
    assert step.attributes["aiop.agent.candidates"] == ("a-claude", "b-openai")
    assert step.attributes["aiop.step.outcome"] == "Completed"
    [fallback] = [e for e in step.events if e.name == "aiop.agent.fallback"]
    assert dict(fallback.attributes or {}) == {
        "aiop.agent.from": "a-claude",
        "aiop.agent.to": "b-openai",
        "error.type": "ProviderUnavailableError",
    }
    claude_task, openai_task = tree.children(step)
    assert claude_task.name == "a-claude [a-claude]" and openai_task.name == "b-openai [b-openai]"
    [claude] = tree.children(claude_task)
    assert claude.name == "invoke_agent a-claude"
    assert claude.kind.name == "CLIENT"
    assert claude.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert claude.attributes["gen_ai.provider.name"] == "anthropic"
    assert claude.attributes["aiop.breaker.name"] == "llm:anthropic"
    assert claude.attributes["error.type"] == "ProviderUnavailableError"
    assert claude.attributes["aiop.error.transient"] is True
    [refused] = tree.children(claude)
    assert refused.name == "chat claude-sonnet-4-5" and refused.status.status_code.name == "ERROR"
    [openai] = tree.children(openai_task)
    assert openai.name == "invoke_agent b-openai"
    assert openai.attributes["gen_ai.provider.name"] == "openai"
    assert openai.attributes["gen_ai.request.model"] == "gpt-4.1"
    assert openai.attributes["gen_ai.response.model"] == "gpt-4.1"
    assert openai.attributes["aiop.llm.budget.max_api_calls"] == 5
    assert openai.attributes["aiop.llm.budget.max_tokens"] == 50_000
    assert openai.attributes["aiop.llm.api_calls"] == 2
    calls = tree.children(openai)
    assert [c.name for c in calls] == ["chat gpt-4.1", "chat gpt-4.1"]
    for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
        assert sum(c.attributes[key] for c in calls) == openai.attributes[key]  # deltas add up
    assert openai.attributes["gen_ai.usage.input_tokens"] == 1700  # OpenAI's count has the cache
    assert openai.attributes["aiop.llm.tokens_spent"] == outcome.llm.usage.spent
    text = text_of(spans.finished())
    assert "kumquat" not in text and "gen_ai.input.messages" not in text
    for line in (*ANTHROPIC_KEY.splitlines(), OPENAI_KEY):
        assert line not in text


def test_an_agent_that_opts_in_shows_its_prompt_and_reply_masked_like_logs(
    prefect_api_url: str, engine: FakeDaggerEngine, spans: SpanStore, report: Path, tmp_path: Path
) -> None:
    definitions = tmp_path / "agents"
    write_definition(
        definitions, _agent("c-claude", "claude-sonnet-4-5", "ANTHROPIC_API_KEY", content=True)
    )
    engine.model.script = [Reply("Saved; code word kumquat.", (save_file("summary", "Ten.\n"),))]
    # a key pasted into a parameter is masked on the trace as in the step's logs
    outcome = _run(engine, definitions, report, note=f"key: {ANTHROPIC_KEY.splitlines()[1]}")
    assert outcome.error is None
    agent = spans.tree().one("invoke_agent c-claude")
    [message] = json.loads(agent.attributes["gen_ai.input.messages"])
    assert message["role"] == "user"
    content = message["parts"][0]["content"]
    assert "kumquat" in content and "key: ***" in content
    [reply] = json.loads(agent.attributes["gen_ai.output.messages"])
    assert reply["parts"][0]["content"] == "Saved; code word kumquat."
    for line in ANTHROPIC_KEY.splitlines():
        assert line not in text_of(spans.finished())
