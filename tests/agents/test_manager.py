"""AgentManager without running anything: ranking by health (real breakers, a fake clock),
candidates for a run, and the refusals decided before anything runs (secrets, llm agents)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.breakers.breaker import Breaker
from adapters.errors import EngineUnavailableError, StepTimeoutError
from adapters.selection import EngineProbe
from agents import AgentManager, AgentNotFoundError, AgentParameterError, AgentSpec
from agents.readiness import key_only_in_block
from agents.secret_values import block_name, resolve_secrets
from tests.agents.conftest import Breakers, FakeClock, minimal

NO_ENGINE = EngineProbe(False, "none", "no container runtime is installed")
ENGINE = EngineProbe(True, "remote", "remote engine at tcp://engine:1234")


def agent(name: str, priority: int = 0, **fields: Any) -> AgentSpec:
    return AgentSpec.model_validate(
        minimal(name=name, priority=priority, capabilities=["work"], **fields)
    )


async def trip(breaker: Breaker) -> None:
    """Open ``breaker`` by recording its own kind of failure: an agent's step timing out, or a
    dead engine."""

    def failure() -> Exception:
        if breaker.kind == "agent":
            return StepTimeoutError("the step hung", timeout_s=1.0)
        return EngineUnavailableError("engine gone")

    async def down() -> None:
        raise failure()

    for _ in range(breaker.policy.fail_max):
        with pytest.raises((StepTimeoutError, EngineUnavailableError)):
            await breaker.call(down)
    assert breaker.state == "open"


async def hold_half_open(breaker: Breaker, clock: FakeClock) -> None:
    """Open ``breaker``, wait past its reset timeout, and let a probe in that proves nothing."""
    await trip(breaker)
    clock.advance(breaker.policy.reset_timeout)
    with pytest.raises(ValueError, match="neutral"):
        async with breaker.admit():
            raise ValueError("neutral")
    assert breaker.state == "half-open"


class TestRanking:
    async def test_closed_before_half_open_before_open(
        self, breakers: Breakers, clock: FakeClock
    ) -> None:
        manager = AgentManager(
            [agent("a-open", 30), agent("b-half", 20), agent("c-closed", 10)],
            breakers=breakers,
            clock=clock,
        )
        await hold_half_open(manager.breaker("b-half"), clock)
        await trip(manager.breaker("a-open"))
        assert [a.name for a in manager.rank("work")] == ["c-closed", "b-half", "a-open"]
        assert manager.health("a-open").breaker_state == "open"

    async def test_an_open_breaker_past_its_probe_time_ranks_as_half_open(
        self, breakers: Breakers, clock: FakeClock
    ) -> None:
        manager = AgentManager([agent("a", 10), agent("b", 0)], breakers=breakers, clock=clock)
        await trip(manager.breaker("a"))
        assert manager.select("work").name == "b"
        await trip(manager.breaker("b"))
        clock.advance(manager.breaker("a").policy.reset_timeout)
        assert manager.health("a").breaker_state == "half-open"
        assert manager.breaker("a").state == "open"  # the breaker itself waits for a call
        assert manager.select("work").name == "a"

    def test_then_recent_success_rate(self, breakers: Breakers, clock: FakeClock) -> None:
        manager = AgentManager(
            [agent("flaky", 100), agent("steady", 0), agent("new", 0)],
            breakers=breakers,
            clock=clock,
        )
        for ok in (True, False):
            manager.record("flaky", ok=ok)
        manager.record("steady", ok=True)
        assert [a.name for a in manager.rank("work")] == ["new", "steady", "flaky"]
        health = manager.health("flaky")
        assert (health.success_rate, health.runs) == (0.5, 2)

    def test_the_success_rate_counts_only_recent_runs(self, breakers: Breakers) -> None:
        manager = AgentManager([agent("a")], breakers=breakers, history=3)
        for ok in (False, False, True, True, True):
            manager.record("a", ok=ok)
        assert manager.health("a").success_rate == 1.0
        assert len(manager.recent_runs("a")) == 3

    def test_then_declared_priority_then_name(self, breakers: Breakers) -> None:
        manager = AgentManager(
            [agent("low", 1), agent("high-b", 5), agent("high-a", 5)], breakers=breakers
        )
        assert [a.name for a in manager.rank("work")] == ["high-a", "high-b", "low"]

    def test_the_shipped_transform_agents_rank_main_first(self, breakers: Breakers) -> None:
        manager = AgentManager.from_paths(breakers=breakers)
        assert [a.name for a in manager.rank("transform")] == [
            "transform-duckdb",
            "transform-duckdb-lowmem",
        ]


class TestCandidates:
    def test_unknown_target_lists_agents_and_capabilities(self, breakers: Breakers) -> None:
        manager = AgentManager([agent("a")], breakers=breakers)
        with pytest.raises(
            AgentNotFoundError,
            match="'nope' is neither an agent nor a capability; agents: a; capabilities: work",
        ):
            manager.candidates("nope")

    def test_a_name_is_only_that_agent(self, breakers: Breakers) -> None:
        manager = AgentManager([agent("a", 9), agent("b")], breakers=breakers)
        assert [a.name for a in manager.candidates("b", {"text": "x"})] == ["b"]

    def test_parameters_that_fit_no_agent_are_a_usage_error(self, breakers: Breakers) -> None:
        manager = AgentManager([agent("a")], breakers=breakers)
        with pytest.raises(AgentParameterError, match="agent 'a' needs parameter 'text'"):
            manager.candidates("work", {})

    def test_agents_that_do_not_accept_the_parameters_are_skipped(self, breakers: Breakers) -> None:
        other = agent(
            "other", 99, parameters={"path": {"description": "p"}}, command=["cat", "{path}"]
        )
        manager = AgentManager([other, agent("a")], breakers=breakers)
        assert [a.name for a in manager.candidates("work", {"text": "x"})] == ["a"]


LLM = minimal(
    name="summarize",
    kind="llm",
    image=None,
    command=None,
    capabilities=["summarize"],
    parameters={"report": {"description": "report folder"}},
    llm={"prompt": "Summarize {report}"},
    secrets=["ANTHROPIC_API_KEY"],
)


class TestRefusals:
    @pytest.mark.parametrize(
        ("probe", "environ", "backend", "expected"),
        [
            (NO_ENGINE, {}, None, ["need a Dagger engine and none is reachable (no container", "the provider key ANTHROPIC_API_KEY is not set where the Dagger engine reads it"]),
            (NO_ENGINE, {"ANTHROPIC_API_KEY": "k"}, "auto", ["need a Dagger engine and none is reachable"]),
            (ENGINE, {}, "dagger", ["the provider key ANTHROPIC_API_KEY is not set where the Dagger engine reads it (a .env file in"]),
            (ENGINE, {"ANTHROPIC_API_KEY": "k"}, "local", ["run only on a Dagger engine (dag.llm()) and the backend is 'local'"]),
            (ENGINE, {"ANTHROPIC_API_KEY": "k"}, None, []),
        ],
    )  # fmt: skip
    async def test_an_llm_agent_is_refused_with_every_reason(
        self,
        breakers: Breakers,
        probe: EngineProbe,
        environ: dict[str, str],
        backend: str | None,
        expected: list[str],
    ) -> None:
        manager = AgentManager(
            [AgentSpec.model_validate(LLM)],
            breakers=breakers,
            engine_probe=lambda: probe,
            environ=environ,
            secret_blocks=_no_blocks,
        )
        _, reasons = await manager.check_ready(manager.get("summarize"), backend)
        assert len(reasons) == len(expected)
        for reason, part in zip(reasons, expected, strict=True):
            assert part in reason

    async def test_a_container_agent_with_its_secrets_is_ready(self, breakers: Breakers) -> None:
        manager = AgentManager(
            [agent("a", secrets=["TOKEN"])],
            breakers=breakers,
            environ={"TOKEN": "t"},
            secret_blocks=_no_blocks,
        )
        assert await manager.check_ready(manager.get("a")) == ({"TOKEN": "t"}, [])


async def _no_blocks(name: str) -> str | None:
    return None


class TestSecretValues:
    async def test_environment_first_then_the_secret_block(self) -> None:
        asked: list[str] = []

        async def blocks(name: str) -> str | None:
            asked.append(name)
            return {"api-token": "from-block"}.get(name)

        values, missing = await resolve_secrets(
            ["API_TOKEN", "HOME_KEY", "GONE"], environ={"HOME_KEY": "from-env"}, load_block=blocks
        )
        assert values == {"API_TOKEN": "from-block", "HOME_KEY": "from-env"}
        assert asked == ["api-token", "gone"]
        assert missing == [
            "secret GONE is not set and there is no Prefect Secret block 'gone'; export GONE=..."
            " or save a Prefect Secret block named 'gone'"
        ]

    async def test_a_failing_block_lookup_is_explained(self) -> None:
        async def broken(name: str) -> str | None:
            raise ConnectionError("server down")

        _, missing = await resolve_secrets(["K"], environ={"K": ""}, load_block=broken)
        assert "could not be read (server down)" in missing[0]

    async def test_without_a_prefect_api_no_block_is_tried(self) -> None:
        _, missing = await resolve_secrets(["K"], environ={}, load_block=None)
        assert "no Prefect Secret block was tried (no Prefect API is configured)" in missing[0]

    def test_block_names_are_lower_kebab(self) -> None:
        assert block_name("OPENAI_API_KEY") == "openai-api-key"


async def test_an_llm_key_only_in_a_secret_block_is_refused_with_the_way_the_engine_reads_keys(
    breakers: Breakers,
) -> None:
    async def block(name: str) -> str | None:
        return "sk-from-block" if name == "anthropic-api-key" else None

    manager = AgentManager(
        [AgentSpec.model_validate(LLM)],
        breakers=breakers,
        engine_probe=lambda: ENGINE,
        environ={},
        secret_blocks=block,
    )
    _, reasons = await manager.check_ready(manager.get("summarize"), None)
    assert reasons == [key_only_in_block("ANTHROPIC_API_KEY")]
