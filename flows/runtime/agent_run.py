"""Running agents: one agent (by name) or the healthiest able one (by capability), with fallback.

The catalog of agents -- who can do what, and how healthy each is -- lives in
:class:`agents.AgentManager`, which knows nothing of Prefect or flows. This module runs them:
:func:`run_agent` tries the candidates the manager ranks, each one's step a ``run_step`` task run
admitted once by the agent's breaker, and :func:`agent_run` is the flow behind ``aiop agents
run``.

:func:`run_agent` moves on to the next agent when one is refused before running (a missing
secret, an llm agent without an engine or key), when its breaker is open, or when its run ends in
an infrastructure error; any other outcome -- success, or the step's own non-zero exit -- is
final. Each error counts against the one breaker it concerns: the agent's breaker counts the
agent's own (a timeout, its image's registry), the engine's breaker the engine's, attempt by
attempt, inside ``run_step``. How one attempt runs is a parameter (``execute``, default
:func:`flows.runtime.step_task.execute_step`), so the fallback rules are testable without Prefect.

Examples:
    >>> from prefect import flow
    >>> from agents import AgentManager
    >>> @flow
    ... async def check() -> str:  # the healthiest 'validate' agent, e.g. validate-duckdb
    ...     params = {"input": "/aiop/in/input.csv", "output": "/aiop/out"}
    ...     return (await run_agent(AgentManager.from_paths(), "validate", params)).state
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from prefect import flow, get_run_logger

from adapters import choose_backend
from adapters.contract import Mount, StepSpec
from adapters.errors import CircuitOpenError, InfrastructureError, InvalidInputError
from adapters.retry_policy import RetryPolicy
from adapters.selection import StepRunner, resolve_runner
from adapters.settings import Settings, load_settings
from agents.errors import AgentRefusedError
from agents.llm_agent import llm_step_spec
from agents.manager import AgentManager
from agents.spec import AgentSpec, ParamValue
from flows.runtime.cache_key import StepKey
from flows.runtime.events import attach_event_emitter
from flows.runtime.llm_task import execute_llm_step
from flows.runtime.outcome import StepOutcome
from flows.runtime.step_task import execute_step
from flows.runtime.trace_spans import StepSpan, step_span, traced_run

__all__ = ["FLOW_NAME", "ExecuteStep", "agent_run", "run_agent"]

FLOW_NAME = "agent-run"
_log = logging.getLogger("aiop.agents")


class ExecuteStep(Protocol):
    """Runs one attempt of a step and reports its outcome without raising
    (the signature of :func:`flows.runtime.step_task.execute_step`)."""

    def __call__(
        self,
        spec: StepSpec,
        backend: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        agent: str | None = None,
        key: StepKey | None = None,
    ) -> Awaitable[StepOutcome]: ...


async def run_agent(
    manager: AgentManager,
    target: str,
    params: Mapping[str, ParamValue | None] | None = None,
    backend: str | None = None,
    *,
    step_name: str | None = None,
    mounts: Mapping[str, str | Mount] | None = None,
    outputs: Mapping[str, str] | None = None,
    caches: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    prepare: Callable[[StepSpec, str], StepSpec] | None = None,
    execute: ExecuteStep | None = None,
    settings: Settings | None = None,
    runner: StepRunner | None = None,
    rows_of: Callable[[StepOutcome], Mapping[str, int]] | None = None,
) -> StepOutcome:
    """Run an agent (by name) or the healthiest able agent (by capability), with fallback.

    With the default ``execute``, it must be awaited inside a Prefect flow: each attempt is a
    ``run_step`` task run named ``<step> [<agent>]``.

    Args:
        manager: the agents to choose from, and their health.
        target: an agent name, or a capability.
        params: parameter values; None means "not given".
        backend: ``auto``, ``dagger``, ``local``, or None for the ``backend`` setting.
        step_name: the step (and task run) name; default the agent's name.
        mounts: host path -> container path, added to the agent's StepSpec.
        outputs: container path -> host path, added to the agent's StepSpec.
        caches: cache volume name -> container path, added to the agent's StepSpec.
        env: environment variables added to the agent's StepSpec.
        prepare: applied to each StepSpec before it runs, with the spec's cache key (e.g. to
            name its output folder after it); the key of the prepared spec is then computed
            from the same fingerprint of the inputs, without reading them again.
        execute: runs one attempt (default :func:`flows.runtime.step_task.execute_step` with ``settings``
            and ``runner``).
        settings: the platform settings (default: read from the environment once, here). The
            retry settings apply over each agent's ``retry:`` section.
        runner: the flow run's runner, resolved once (:func:`adapters.selection.resolve_runner`),
            for the default ``execute``; None: each attempt resolves its own from ``backend``.
        rows_of: the rows the step reports (``in``, ``out``...), read from its outcome for
            the step's span (:mod:`flows.runtime.trace_spans`).

    The step is one span of the run's trace (``step <name>``), whichever agents are tried: each
    refusal, open breaker and move to the next agent is an event on it.

    Returns:
        The outcome of the last agent tried; ``error`` is set when none succeeded (an
        :class:`~agents.AgentRefusedError` or :class:`~adapters.CircuitOpenError` when none
        could run).

    Raises:
        AgentNotFoundError: ``target`` is neither an agent nor a capability.
        AgentParameterError: ``params`` fit none of the candidates.
    """
    settings = settings if settings is not None else load_settings()
    backend = backend or settings.backend
    if execute is None:
        execute = functools.partial(execute_step, settings=settings, runner=runner)
    by_name = target in {a.name for a in manager.agents()}
    candidates = manager.candidates(target, params)
    with step_span(
        step_name or target,
        capability=None if by_name else target,
        candidates=[a.name for a in candidates],
    ) as (span, owned):
        outcome = await _run_candidates(
            manager, target, params, backend, candidates, by_name, span,
            step_name=step_name, mounts=mounts, outputs=outputs, caches=caches, env=env,
            prepare=prepare, execute=execute, settings=settings,
        )  # fmt: skip
        span.finish(outcome, rows_of(outcome) if rows_of is not None else None, final=owned)
    return outcome


async def _run_candidates(
    manager: AgentManager,
    target: str,
    params: Mapping[str, ParamValue | None] | None,
    backend: str,
    candidates: list[AgentSpec],
    by_name: bool,
    span: StepSpan,
    *,
    step_name: str | None,
    mounts: Mapping[str, str | Mount] | None,
    outputs: Mapping[str, str] | None,
    caches: Mapping[str, str] | None,
    env: Mapping[str, str] | None,
    prepare: Callable[[StepSpec, str], StepSpec] | None,
    execute: ExecuteStep,
    settings: Settings,
) -> StepOutcome:
    started, started_at = time.monotonic(), time.time()
    logger = _run_logger()
    skipped: list[Exception] = []
    failed: StepOutcome | None = None
    previous: tuple[str, BaseException | None] | None = None  # the agent tried before, and why
    for index, agent in enumerate(candidates):
        more = "; trying the next agent" if index + 1 < len(candidates) else ""
        values, reasons = await manager.check_ready(agent, backend)
        if reasons:
            refused = AgentRefusedError(
                f"agent {agent.name!r} is refused before anything runs: " + "; ".join(reasons)
            )
            skipped.append(refused)
            span.refused(agent.name, refused)
            previous = (agent.name, refused)
            logger.warning("%s%s", refused, more)
            continue
        run_once: Callable[[], Awaitable[StepOutcome]]
        retry = settings.retry_policy(agent.retry.policy())
        if agent.kind == "llm":  # the model runs on the engine's LLM API (flows.runtime.llm_task)
            llm_spec = llm_step_spec(agent, params, name=step_name)
            step = llm_spec.name
            run_once = functools.partial(
                execute_llm_step, llm_spec, retry=retry, agent=agent.name, settings=settings
            )
        else:
            spec = agent.to_step_spec(
                params,
                secrets=values,
                name=step_name,
                mounts=mounts,
                outputs=outputs,
                caches=caches,
                env=env,
            )
            key: StepKey | None = None
            if prepare is not None:
                try:  # the inputs are fingerprinted once, for both keys
                    key = StepKey(spec, settings.installation_key_file)
                except InvalidInputError as exc:  # an unusable installation key: final
                    return StepOutcome(
                        spec.name, "Failed", 0, 0.0, error=exc, started_at=started_at
                    )
                spec = prepare(spec, key.of(spec))
            step = spec.name
            run_once = functools.partial(
                execute, spec, backend, retry=retry, agent=agent.name, key=key
            )
        logger.info(
            "agent %r runs step %r%s",
            *(agent.name, step, "" if by_name else f" (capability {target!r})"),
        )
        if previous is not None:
            span.fallback(previous[0], agent.name, previous[1])
        try:
            outcome = await _attempt(manager, agent, run_once)
        except CircuitOpenError as exc:
            skipped.append(exc)
            span.rejected(exc, agent=agent.name)
            previous = (agent.name, exc)
            logger.warning("%s%s", exc, more)
            continue
        manager.record(agent.name, ok=outcome.error is None, state=outcome.state, step=step)
        if isinstance(outcome.error, InfrastructureError) and more:
            logger.warning("agent %r failed (%s)%s", agent.name, outcome.error, more)
            failed = outcome
            previous = (agent.name, outcome.error)
            continue
        return outcome
    if failed is not None:  # an agent ran and failed; the others could not run at all
        return failed
    error = (
        skipped[0]
        if len(skipped) == 1
        else AgentRefusedError(
            f"no agent could run {target!r}: " + "; ".join(str(e) for e in skipped)
        )
    )
    return StepOutcome(
        step_name or target,
        "Failed",
        0,
        time.monotonic() - started,
        error=error,
        started_at=started_at,
    )


async def _attempt(
    manager: AgentManager,
    agent: AgentSpec,
    run_once: Callable[[], Awaitable[StepOutcome]],
) -> StepOutcome:
    """One run of the agent's step, admitted once by its breaker, as a ``run_step`` (or
    ``run_llm_step``) task run named ``<step> [<agent>]`` followed by an
    ``aiop.agent.step.<state>`` event. The breaker counts the outcome's error if it is one of the
    agent's own (:func:`adapters.breakers.policy.classify_outcome`).

    Not a Prefect tag: a tagged task run makes Prefect reserve tag concurrency slots before it
    starts, which stalls for 2 s whenever the SQLite server is busy (:mod:`agents.recent`).

    Raises:
        CircuitOpenError: the agent's breaker did not admit the run (nothing ran).
    """
    async with attach_event_emitter(manager.breaker(agent.name)).admit() as permit:
        outcome = await run_once()
        permit.record(outcome.error)
    return outcome


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # outside a flow or task run
        return _log


@flow(name=FLOW_NAME, flow_run_name="{target}", log_prints=False)
@traced_run(FLOW_NAME)
async def agent_run(
    target: str,
    params: dict[str, str] | None = None,
    backend: str | None = None,
    mounts: dict[str, str] | None = None,
    outputs: dict[str, str] | None = None,
    paths: list[str] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Run one agent (by name, or the healthiest for a capability) and return what it did: the
    flow behind ``aiop agents run``.

    Args:
        target: an agent name or a capability.
        params: the agent's parameters.
        backend: ``auto``, ``dagger`` or ``local`` (default: the ``backend`` setting).
        mounts: host path -> container path, read-only.
        outputs: container path -> host path, exported after the step exits 0.
        paths: definition folders or files (default: shipped + the ``agents_path`` setting).
        settings: the platform settings (default: read from the environment once, here).

    Returns:
        ``agent``, ``step``, ``state``, ``attempts``, ``exit_code``, ``duration_s``, ``backend``,
        ``stdout``, ``stderr`` (tails, secrets masked) and ``outputs``.

    Raises:
        AiopError: the step failed, or no agent could run (the flow run ends Failed).

    Examples:
        >>> import asyncio
        >>> asyncio.run(agent_run("validate-duckdb", {"input": "/in.csv", "output": "/out"},
        ...                       backend="local"))  # doctest: +SKIP
    """
    settings = settings if settings is not None else load_settings()
    backend = backend or settings.backend
    manager = AgentManager.from_settings(settings, paths)
    runner: StepRunner | None = None
    if any(a.kind == "container" for a in manager.candidates(target, params)):
        get_run_logger().info(choose_backend(backend).reason)  # llm agents say it when refused
        runner = resolve_runner(  # once for every agent tried
            backend,
            provision_timeout_s=settings.dagger_provision_timeout_s,
            cache_dir=settings.cache_dir,
        )
    outcome = await run_agent(
        manager,
        target,
        params,
        backend,
        mounts=mounts,
        outputs=outputs,
        settings=settings,
        runner=runner,
    )
    if outcome.error is not None:
        raise outcome.error
    assert outcome.result is not None
    runs = manager.recent_runs()
    result = outcome.result
    if outcome.llm is not None:  # an llm agent: what the model did and what it cost
        return {
            "agent": runs[-1].agent if runs else target,
            "step": outcome.name,
            "state": outcome.state,
            "attempts": outcome.attempts,
            "model": outcome.llm.model,
            "api_calls": outcome.llm.api_calls,
            "exit_code": 0,
            "tokens": outcome.llm.usage.model_dump(),
            "duration_s": outcome.llm.duration_s,
            "backend": result.backend,
            "stdout": result.stdout,
            "stderr": "",
            "outputs": result.outputs,
        }
    return {
        "agent": runs[-1].agent if runs else target,
        "step": outcome.name,
        "state": outcome.state,
        "attempts": outcome.attempts,
        "exit_code": result.exit_code,
        "duration_s": result.duration_s,
        "backend": result.backend,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "outputs": result.outputs,
    }
