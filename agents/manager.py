"""``AgentManager``: who does the work -- the healthiest agent able to, with fallback.

Agents able to do a capability are ranked by health:

1. their breaker (``agent:<name>``): closed before half-open before open (an open breaker whose
   probe time has come counts as half-open: it would let a probe through);
2. then their recent success rate (a bounded window of runs in this process; an agent with no
   runs yet counts as fully successful);
3. then their declared ``priority`` (higher first), then their name.

:func:`flows.runtime.agent_run.run_agent` tries them in that order, with fallback. This module is the
catalog only (select, rank, health, readiness): it never imports Prefect or ``flows``, so the
layers point one way (flows -> agents -> adapters).

Examples:
    >>> manager = AgentManager.from_paths()
    >>> manager.select("transform").name
    'transform-duckdb'
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from adapters.breakers.breaker import Breaker, BreakerPolicy, get_breaker
from adapters.errors import InvalidInputError
from adapters.selection import EngineProbe, probe_engine
from adapters.settings import Settings
from agents.errors import AgentNotFoundError, AgentParameterError
from agents.health import AgentHealth, RunHistory, RunRecord, effective_state
from agents.loader import DefinitionProblem, default_paths, load_definitions
from agents.readiness import check_ready
from agents.secret_values import BlockLoader, load_prefect_secret, prefect_api_configured
from agents.spec import AgentSpec, ParamValue

__all__ = ["AgentManager", "BreakerLookup"]

_log = logging.getLogger("aiop.agents")

#: ``(breaker name, policy) -> Breaker``; the default is the process-wide :func:`get_breaker`.
BreakerLookup = Callable[[str, BreakerPolicy | None], Breaker]


class AgentManager:
    """The declared agents: list, get, select by capability, run with fallback.

    Args:
        agents: the agents (names must be unique).
        problems: definition problems found while loading them (kept for display).
        breakers: ``(name, policy) -> Breaker``; default the process-wide :func:`get_breaker`.
        clock: epoch seconds, the same clock the breakers use (for "probe time has come").
        history: how many recent runs per agent count for its success rate.
        engine_probe: finds a Dagger engine (llm agents need one); default :func:`probe_engine`.
        environ: where secret values are looked up first (``os.environ`` if None).
        secret_blocks: loads Prefect Secret blocks; default: Prefect's, when an API is configured.

    Examples:
        >>> manager = AgentManager.from_paths()
        >>> [a.name for a in manager.rank("transform")]
        ['transform-duckdb', 'transform-duckdb-lowmem']
    """

    def __init__(
        self,
        agents: Iterable[AgentSpec] = (),
        *,
        problems: Iterable[DefinitionProblem] = (),
        breakers: BreakerLookup = get_breaker,
        clock: Callable[[], float] = time.time,
        history: int = 20,
        engine_probe: Callable[[], EngineProbe] = probe_engine,
        environ: Mapping[str, str] | None = None,
        secret_blocks: BlockLoader | None = None,
    ) -> None:
        self._agents: dict[str, AgentSpec] = {}
        for agent in agents:
            if agent.name in self._agents:
                raise InvalidInputError(f"two agents are named {agent.name!r}; rename one")
            self._agents[agent.name] = agent
        self.problems = list(problems)
        self._breakers = breakers
        self._clock = clock
        self._history = RunHistory(history)
        self._engine_probe = engine_probe
        self._environ = environ
        self._secret_blocks = secret_blocks

    @classmethod
    def from_paths(
        cls, paths: Iterable[str | os.PathLike[str]] | None = None, **options: Any
    ) -> AgentManager:
        """Load the definitions in ``paths`` (default: the shipped ones; see :func:`default_paths`).

        Problems are logged as warnings and kept in :attr:`problems`; they never stop the others.

        Examples:
            >>> AgentManager.from_paths().get("ingest-duckdb").capabilities
            ('ingest',)
        """
        agents, problems = load_definitions(paths)
        for problem in problems:
            _log.warning("agent definition skipped: %s", problem)
        return cls(agents, problems=problems, **options)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        paths: Iterable[str | os.PathLike[str]] | None = None,
        **options: Any,
    ) -> AgentManager:
        """:meth:`from_paths` configured by ``settings``: the shipped definitions plus those of
        ``agents_path`` (unless ``paths`` is given), and agent breakers that take the breaker
        settings (where a definition has no ``breaker:`` section) and the breaker Redis URL.

        Examples:
            >>> from adapters.settings import Settings
            >>> manager = AgentManager.from_settings(Settings(breaker={"fail_max": 2}))
            >>> manager.breaker("validate-duckdb").policy.fail_max
            2
        """
        policy, redis_url = settings.breaker_policy(), settings.redis_url()

        def breakers(name: str, own: BreakerPolicy | None) -> Breaker:
            return get_breaker(name, own, default_policy=policy, redis_url=redis_url)

        options.setdefault("breakers", breakers)
        chosen = default_paths(settings.agent_paths()) if paths is None else paths
        return cls.from_paths(chosen, **options)

    # -- looking up ------------------------------------------------------------------------

    def agents(self) -> list[AgentSpec]:
        """Every agent, in load order."""
        return list(self._agents.values())

    def capabilities(self) -> list[str]:
        """Every capability some agent offers, sorted."""
        return sorted({c for a in self._agents.values() for c in a.capabilities})

    def get(self, name: str) -> AgentSpec:
        """The agent named ``name``.

        Raises:
            AgentNotFoundError: no such agent; the message lists the known ones.
        """
        agent = self._agents.get(name)
        if agent is None:
            raise AgentNotFoundError(self._not_found(f"no agent is named {name!r}"))
        return agent

    def rank(self, capability: str) -> list[AgentSpec]:
        """The agents able to do ``capability``, healthiest first (see the module docstring).

        Raises:
            AgentNotFoundError: no agent offers ``capability``.
        """
        able = [a for a in self._agents.values() if capability in a.capabilities]
        if not able:
            raise AgentNotFoundError(self._not_found(f"no agent can do {capability!r}"))
        return sorted(able, key=lambda a: self.health(a.name).sort_key())

    def select(self, capability: str) -> AgentSpec:
        """The healthiest agent able to do ``capability``.

        Examples:
            >>> AgentManager.from_paths().select("validate").name
            'validate-duckdb'
        """
        return self.rank(capability)[0]

    # -- health ----------------------------------------------------------------------------

    def breaker(self, name: str) -> Breaker:
        """The breaker of agent ``name`` (``agent:<name>``)."""
        agent = self.get(name)
        return self._breakers(agent.breaker_name, agent.breaker_policy())

    def health(self, name: str) -> AgentHealth:
        """How agent ``name`` looks now: breaker state, recent success rate, priority."""
        agent = self.get(name)
        return AgentHealth(
            name=agent.name,
            breaker_state=effective_state(self.breaker(name), self._clock),
            success_rate=self._history.success_rate(name),
            runs=len(self._history.runs(name)),
            priority=agent.priority,
        )

    def record(self, name: str, *, ok: bool, state: str = "", step: str | None = None) -> None:
        """Count one finished run of agent ``name`` toward its recent success rate."""
        self.get(name)
        state = state or ("Completed" if ok else "Failed")
        self._history.record(RunRecord(name, step or name, state, ok, self._clock()))

    def recent_runs(self, name: str | None = None) -> list[RunRecord]:
        """Recent runs of agent ``name`` (or of every agent) in this process, oldest first."""
        return self._history.runs(name)

    # -- running ---------------------------------------------------------------------------

    async def check_ready(
        self, agent: AgentSpec, backend: str | None = None
    ) -> tuple[dict[str, str], list[str]]:
        """Resolve ``agent``'s secrets and say why it cannot run here (see :mod:`agents.readiness`).

        Returns:
            The secret values found, and the reasons it cannot run (empty when it can).
        """
        blocks = self._secret_blocks
        if blocks is None and agent.secrets and prefect_api_configured():
            blocks = load_prefect_secret
        return await check_ready(
            agent,
            backend,
            environ=self._environ,
            secret_blocks=blocks,
            engine_probe=self._engine_probe,
        )

    def candidates(
        self, target: str, params: Mapping[str, ParamValue | None] | None = None
    ) -> list[AgentSpec]:
        """Who :func:`flows.runtime.agent_run.run_agent` would try, in order: the agent named ``target``,
        or the agents able to do capability ``target`` ranked by health; only those that accept ``params``.

        Raises:
            AgentNotFoundError: ``target`` is neither an agent nor a capability.
            AgentParameterError: ``params`` fit none of them.
        """
        if target not in self._agents and target not in self.capabilities():
            raise AgentNotFoundError(
                self._not_found(f"{target!r} is neither an agent nor a capability")
            )
        ranked = [self.get(target)] if target in self._agents else self.rank(target)
        accepted, problems = [], []
        for agent in ranked:
            try:
                if agent.command is not None:
                    agent.render_args(params or {})
                else:
                    agent.parameter_values(params or {})
            except InvalidInputError as exc:
                problems.append(exc.message)
            else:
                accepted.append(agent)
        if not accepted:
            raise AgentParameterError(problems[0])
        return accepted

    def _not_found(self, what: str) -> str:
        names = ", ".join(self._agents) or "none"
        text = f"{what}; agents: {names}; capabilities: {', '.join(self.capabilities()) or 'none'}"
        if self.problems:
            text += (
                f" ({len(self.problems)} definition(s) could not be loaded; see them with"
                " aiop agents validate)"
            )
        return text
