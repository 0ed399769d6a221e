"""The key the engine uses is the key the platform checks, masks and names its breaker after.

The engine's router (dagger/dagger v0.21.8, core/llm.go) takes the provider from the model's name
and reads that provider's key itself: from ``.env`` in the working directory of the session's
process first, then from its environment, resolving a value that is a secret reference. The
stand-in engine routes the same way (tests/fakes/dagger_llm.py), independently of
``adapters.llm_route``, which these tests hold to it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.dagger.llm import DaggerLlmRunner
from adapters.dagger.runner import DaggerRunner
from adapters.errors import InvalidSpecError
from adapters.llm_contract import LlmInput, LlmOutput, LlmResult, LlmSpec
from adapters.llm_route import EngineConfig, Route, provider_of_model
from adapters.ownership import write_owned_file
from adapters.selection import EngineProbe
from agents.readiness import check_ready
from agents.spec import AgentSpec
from flows.runtime.llm_task import provider_breaker_name
from tests.fakes.dagger_engine import FakeDaggerEngine
from tests.fakes.dagger_llm import Reply, save_file
from tests.fakes.session import standin_session

DOTENV_KEY = "sk-ant-from-dotenv-0123456789"
REAL_KEY = "sk-ant-resolved-from-a-reference-42"
ENGINE = EngineProbe(True, "session", "the stand-in")
CLEAN = {"PATH": "/usr/bin"}


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory of this process and of the session's process (.env is read here)."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "OPENAI_MODEL",
                 "ANTHROPIC_MODEL", "GEMINI_MODEL", "OPENAI_BASE_URL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return folder


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, here: Path) -> Iterator[FakeDaggerEngine]:
    with standin_session(monkeypatch) as fake:
        yield fake


@pytest.fixture
def report(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    write_owned_file(folder, "summary.json", json.dumps({"rows_in": 3}).encode())
    return folder


def spec_for(report: Path, **changes: Any) -> LlmSpec:
    data: dict[str, Any] = {
        "name": "summarize",
        "model": "claude-sonnet-4-5",
        "prompt": "Summarize the report.",
        "key_name": "ANTHROPIC_API_KEY",
        "inputs": {"report": LlmInput(kind="directory", value=str(report), description="r")},
        "outputs": {
            "summary": LlmOutput(kind="file", path=str(report / "summary.md"), description="s")
        },
        **changes,
    }
    return LlmSpec.model_validate(data)


def run(spec: LlmSpec) -> LlmResult:
    return asyncio.run(DaggerLlmRunner(DaggerRunner(provision_timeout_s=5)).run(spec))


def quoting(secret: str) -> list[Reply | Any]:
    """A model that repeats a secret it saw, then saves its summary."""
    return [Reply(f"I was given {secret}.", (save_file("summary", "done\n"),))]


class TestTheRouter:
    """The provider follows the model's name (core/llm.go ``LLMRouter.Route``)."""

    @pytest.mark.parametrize(
        ("model", "provider"),
        [
            ("claude-sonnet-4-5", "anthropic"),
            ("anthropic/claude-opus", "anthropic"),
            ("claude", "anthropic"),
            ("gpt-4.1", "openai"),
            ("openai/o3", "openai"),
            ("gemini-2.5-flash", "google"),
            ("google/gemini-pro", "google"),
            ("llama-3.2", "other"),
            ("o3-mini", "other"),  # no gpt- prefix: an OpenAI-compatible endpoint, "other"
        ],
    )
    def test_the_provider_is_the_one_the_engine_routes_to(self, model: str, provider: str) -> None:
        assert provider_of_model(model) == provider

    def test_a_mistral_model_is_refused_as_the_engine_refuses_it(self) -> None:
        with pytest.raises(ValueError, match="mistral models are not yet supported"):
            provider_of_model("mistral-large")

    @pytest.mark.parametrize(
        ("environ", "route"),
        [
            ({"ANTHROPIC_API_KEY": "a"}, Route("claude-sonnet-4-5", "anthropic", "ANTHROPIC_API_KEY")),
            ({"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o"}, Route("gpt-4.1", "openai", "OPENAI_API_KEY")),
            ({"OPENAI_API_KEY": "o", "ANTHROPIC_MODEL": "claude-opus-4"}, Route("claude-opus-4", "anthropic", "ANTHROPIC_API_KEY")),
            ({"GEMINI_API_KEY": "g"}, Route("gemini-2.5-flash", "google", "GEMINI_API_KEY")),
            ({"OPENAI_BASE_URL": "http://ollama:11434/v1"}, Route("llama-3.2", "other", "OPENAI_API_KEY")),
            ({}, None),
        ],
    )  # fmt: skip
    def test_with_no_model_the_default_is_the_engines(
        self, here: Path, environ: dict[str, str], route: Route | None
    ) -> None:
        assert EngineConfig(cwd=here, environ=environ).route(None) == route

    def test_dotenv_comes_first_even_when_its_entry_is_empty(self, here: Path) -> None:
        (here / ".env").write_text(f"ANTHROPIC_API_KEY={DOTENV_KEY}\nOPENAI_API_KEY=\n")
        config = EngineConfig(cwd=here, environ={"OPENAI_API_KEY": "sk-env", **CLEAN})
        assert config.key("ANTHROPIC_API_KEY").value == DOTENV_KEY
        assert config.key("OPENAI_API_KEY").found_in is None  # the empty entry hides the env's
        assert config.route(None) == Route("claude-sonnet-4-5", "anthropic", "ANTHROPIC_API_KEY")


class TestAKeyTheModelsProviderDoesNotReadIsRefused:
    """Before anything runs: the engine would send the model with another provider's key."""

    def test_an_llm_spec(self, report: Path) -> None:
        with pytest.raises(ValidationError, match="gives it the key in OPENAI_API_KEY"):
            spec_for(report, model="gpt-4.1")

    def test_an_agent_definition(self) -> None:
        with pytest.raises(ValidationError, match="gives it the key in GEMINI_API_KEY, not"):
            AgentSpec.model_validate(
                {
                    "name": "summarize",
                    "kind": "llm",
                    "description": "d",
                    "capabilities": ["summarize"],
                    "llm": {"prompt": "Summarize.", "model": "gemini-2.5-flash"},
                    "secrets": ["ANTHROPIC_API_KEY"],
                }
            )

    def test_no_model_and_a_default_of_another_provider(
        self, engine: FakeDaggerEngine, report: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-oai-1")  # the engine's default is then gpt-4.1
        with pytest.raises(InvalidSpecError, match=r"default model .gpt-4\.1."):
            run(spec_for(report, model=None))
        assert engine.queries == []


class TestTheValueTheEngineUsesIsMasked:
    def test_a_key_read_from_dotenv(
        self, engine: FakeDaggerEngine, report: Path, here: Path
    ) -> None:
        (here / ".env").write_text(f'ANTHROPIC_API_KEY="{DOTENV_KEY}"\n')
        engine.model.valid_keys = {DOTENV_KEY}
        engine.model.script = quoting(DOTENV_KEY)
        result = run(spec_for(report))
        assert engine.model.calls[0].key == DOTENV_KEY  # the engine read it there
        assert result.reply == "I was given ***."

    @pytest.mark.parametrize("where", ["environment", ".env"])
    def test_a_key_that_is_an_env_reference(
        self,
        engine: FakeDaggerEngine,
        report: Path,
        here: Path,
        monkeypatch: pytest.MonkeyPatch,
        where: str,
    ) -> None:
        monkeypatch.setenv("VAULTED_ANTHROPIC_KEY", REAL_KEY)
        if where == ".env":
            (here / ".env").write_text("ANTHROPIC_API_KEY=env://VAULTED_ANTHROPIC_KEY\n")
        else:
            monkeypatch.setenv("ANTHROPIC_API_KEY", "env://VAULTED_ANTHROPIC_KEY")
        engine.model.valid_keys = {REAL_KEY}
        engine.model.script = quoting(REAL_KEY)
        result = run(spec_for(report))
        assert engine.model.calls[0].key == REAL_KEY
        assert result.reply == "I was given ***."

    def test_a_key_that_is_a_file_reference(
        self,
        engine: FakeDaggerEngine,
        report: Path,
        here: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        (here / "anthropic.key").write_text(REAL_KEY)
        monkeypatch.setenv("ANTHROPIC_API_KEY", f"file://{here / 'anthropic.key'}")
        engine.model.valid_keys = {REAL_KEY}
        engine.model.script = quoting(REAL_KEY)
        assert run(spec_for(report)).reply == "I was given ***."

    def test_an_edited_dotenv_is_read_again_for_the_next_run(
        self, engine: FakeDaggerEngine, report: Path, here: Path
    ) -> None:
        # The engine routes every new LLM afresh (core/llm.go Endpoint -> loadLLMRouter).
        (here / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-old-key-000000\n")
        engine.model.valid_keys = {"sk-ant-old-key-000000", DOTENV_KEY}
        engine.model.script = quoting("sk-ant-old-key-000000")
        run(spec_for(report))
        (here / ".env").write_text(f"ANTHROPIC_API_KEY={DOTENV_KEY}\n")
        engine.model.script = quoting(DOTENV_KEY)
        result = run(spec_for(report))
        assert [c.key for c in engine.model.answered] == ["sk-ant-old-key-000000", DOTENV_KEY]
        assert result.reply == "I was given ***."


class TestTheBreakerIsTheProvidersTheEngineCalls:
    def test_a_model_of_no_known_provider_is_other(self, report: Path) -> None:
        spec = spec_for(report, model="llama-3.2", key_name="OPENAI_API_KEY")
        assert provider_breaker_name(spec) == "llm:other"

    def test_no_model_is_the_default_models_provider(
        self, report: Path, here: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OPENAI_BASE_URL", "http://ollama:11434/v1")
        spec = spec_for(report, model=None, key_name="OPENAI_API_KEY")
        assert provider_breaker_name(spec) == "llm:other"


LLM_AGENT = {
    "name": "summarize",
    "kind": "llm",
    "description": "d",
    "capabilities": ["summarize"],
    "llm": {"prompt": "Summarize."},
    "secrets": ["ANTHROPIC_API_KEY"],
}


class TestReadiness:
    async def test_a_key_only_in_dotenv_is_ready(self, here: Path) -> None:
        (here / ".env").write_text(f"ANTHROPIC_API_KEY={DOTENV_KEY}\n")
        agent = AgentSpec.model_validate(LLM_AGENT)
        _, reasons = await check_ready(
            agent, None, environ=CLEAN, secret_blocks=None, engine_probe=lambda: ENGINE
        )
        assert reasons == []

    async def test_a_reference_that_does_not_resolve_is_refused(self, here: Path) -> None:
        agent = AgentSpec.model_validate(LLM_AGENT)
        environ = {"ANTHROPIC_API_KEY": "env://NOT_THERE", **CLEAN}
        _, reasons = await check_ready(
            agent, None, environ=environ, secret_blocks=None, engine_probe=lambda: ENGINE
        )
        assert reasons == [
            "the provider key cannot be read: ANTHROPIC_API_KEY in the environment is"
            " env://NOT_THERE, and NOT_THERE is not set"
        ]

    async def test_no_model_and_the_engine_would_pick_another_provider(self, here: Path) -> None:
        agent = AgentSpec.model_validate(LLM_AGENT)
        environ = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o", **CLEAN}
        _, reasons = await check_ready(
            agent, None, environ=environ, secret_blocks=None, engine_probe=lambda: ENGINE
        )
        assert len(reasons) == 1
        assert "default model 'gpt-4.1', which uses OPENAI_API_KEY" in reasons[0]
