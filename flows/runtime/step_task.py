"""``run_step``: one StepSpec run as a Prefect task run, retried as a retry policy says.

The task run is named after the step; the command is logged with secrets masked; output lines are
streamed to the run logger as they arrive. Infrastructure errors are retried with exponential backoff
and jitter; a non-zero exit fails the task at once (naming the step, the exit code and the last stderr
lines) unless the step declares that exit code transient.

**One breaker decision per attempt.** Each attempt is admitted or refused once, by the engine's
breaker, which counts only the engine's own errors (an agent's breaker decides once per step, in
:func:`flows.runtime.agent_run.run_agent`, and counts the agent's errors). :func:`execute_step` takes
the first attempt's decision before the task run exists, so a step the open breaker refuses costs
no task run, and hands it to that attempt; later attempts decide themselves.

**The cache key, once.** The key (:mod:`flows.runtime.cache_key`) is computed once per step run and
given to the task run and to the cache lookup. A cached result is used only while the step's
outputs still hold what the platform wrote there, as their manifests prove
(:func:`adapters.ownership.output_present`; :func:`execute_step` refreshes the cache otherwise, and
for steps a fault plan targets).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from pathlib import Path
from typing import Any, Literal, overload

from prefect import get_run_logger, task
from prefect.client.schemas.objects import State
from prefect.concurrency.asyncio import concurrency
from prefect.context import TaskRunContext
from prefect.results import get_result_store
from prefect.runtime import task_run as runtime_task_run
from prefect.settings.context import get_current_settings
from prefect.utilities.annotations import opaque

from adapters import (
    AiopError,
    CircuitOpenError,
    InvalidInputError,
    StepFailedError,
    StepResult,
    StepSpec,
)
from adapters.breakers.breaker import Breaker, Permit, get_breaker
from adapters.ownership import origin_of, output_present
from adapters.retry_policy import RetryPolicy
from adapters.runner import Stream
from adapters.selection import StepRunner, resolve_runner
from adapters.settings import Settings, load_settings
from agents.recent import agent_run_name
from flows.runtime.cache_key import StepKey
from flows.runtime.events import attach_event_emitter, emit_step_event
from flows.runtime.installation_key import installation_key
from flows.runtime.outcome import StepFacts, StepOutcome
from flows.runtime.retries import task_retry_options
from flows.runtime.trace_spans import StepSpan, attempt_span, breaker_wait, step_span

__all__ = [
    "FirstAttempt",
    "StepFacts",
    "StepOutcome",
    "execute_step",
    "outputs_present",
    "run_step",
    "run_step_task",
    "task_run_name",
]

_STDERR_LINES_IN_ERROR = 12


def outputs_present(spec: StepSpec) -> bool:
    """True when every output of ``spec`` is still as written (a cached result is still usable)."""
    return all(output_present(Path(host), origin_of(spec)) for host in spec.outputs.values())


def task_run_name(parameters: dict[str, Any]) -> str:
    """The name of a ``run_step`` task run: the step's, and the agent's in brackets when an agent
    runs it (``validate [validate-duckdb]``; see :func:`agents.recent.agent_run_name`).

    The agent is in the name rather than in a tag: Prefect reserves tag concurrency slots before
    every tagged task run, which stalls for seconds on a busy SQLite server.
    """
    spec = parameters["spec"]
    name = spec.name if isinstance(spec, StepSpec) else str(spec)
    return agent_run_name(name, parameters.get("agent"))


class FirstAttempt:
    """The engine breaker's decision for a step's first attempt, taken before its task run exists:
    a :class:`~adapters.breakers.breaker.Permit`, or the refusal. The first attempt takes it
    instead of asking the breaker again; later attempts decide themselves."""

    def __init__(self, decision: Permit | CircuitOpenError) -> None:
        self._decision: Permit | CircuitOpenError | None = decision
        self._permit = decision if isinstance(decision, Permit) else None

    def take(self) -> Permit | CircuitOpenError | None:
        """The decision, once; None afterwards."""
        decision, self._decision = self._decision, None
        return decision

    def release(self) -> None:
        """Give an admitted permit back if no attempt used it (the result came from the cache)."""
        if self._permit is not None and self._decision is not None:
            self._permit.release()
        self._decision = None


def _engine_breaker(name: str, settings: Settings) -> Breaker:
    return attach_event_emitter(
        get_breaker(name, default_policy=settings.breaker_policy(), redis_url=settings.redis_url())
    )


def _cache_key(spec: StepSpec, settings: Settings, gathered: StepKey | None) -> str | None:
    """The step's cache key, computed once for the step run; None when the installation key
    cannot be used (the task run then fails on it, in one paragraph)."""
    try:
        return (gathered or StepKey(spec, settings.installation_key_file)).of(spec)
    except InvalidInputError:
        return None


def _given_key(context: Any, parameters: dict[str, Any]) -> str | None:
    """A ``cache_key_fn`` that gives the key computed once for this step run (the task's
    ``cache_key`` argument)."""
    key = parameters.get("cache_key")
    return key if isinstance(key, str) else None


@task(name="run_step", task_run_name=task_run_name, persist_result=True)  # type: ignore[arg-type]
async def run_step_task(
    spec: StepSpec,
    backend: str | None = None,
    agent: str | None = None,
    settings: Settings | None = None,
    facts: StepFacts | None = None,
    runner: StepRunner | None = None,
    first: FirstAttempt | None = None,
    cache_key: str | None = None,
) -> StepResult:
    """The Prefect task behind :func:`run_step`; :func:`run_step` gives it its retry options and
    its cache key. Arguments as :func:`run_step`'s, plus ``first`` (:class:`FirstAttempt`) and
    ``cache_key`` (the step's key, computed once; the task's own cache key function reads it)."""
    logger = get_run_logger()
    settings = settings if settings is not None else load_settings()
    attempt = int(runtime_task_run.run_count or 1)
    if spec.secrets:
        # Secret values enter the cache key under the installation key: a bad key file fails
        # the step here, in one paragraph (InvalidInputError: never retried), where it would
        # otherwise run uncached.
        installation_key(settings.installation_key_file)
    if runner is None:
        runner = resolve_runner(
            backend or settings.backend,
            provision_timeout_s=settings.dagger_provision_timeout_s,
            cache_dir=settings.cache_dir,
        )
    logger.info(
        "%s (%sbackend %s, attempt %d): %s",
        spec.name,
        f"agent {agent}, " if agent else "",
        runner.backend,
        attempt,
        spec.redacted_command(),
    )

    def forward(stream: Stream, line: str) -> None:
        logger.info("%s", line if stream == "stdout" else f"[{stream}] {line}")

    breaker = _engine_breaker(runner.breaker_name, settings)
    traced = attempt_span(
        spec.name,
        attempt,
        backend=runner.backend,
        breaker=breaker,
        agent=agent,
        secrets=spec.secret_values(),
    )
    with traced as span:  # current while the runner runs: the runner passes it on
        try:
            decision = first.take() if first is not None else None
            if isinstance(decision, CircuitOpenError):
                raise decision
            # The attempt's one breaker decision; the engine slot is taken inside it, so an open
            # circuit refuses without waiting for a slot.
            async with (
                decision or breaker.admit(),
                _engine_slot(settings.engine_limit),
            ):
                result = await runner.runner.run(spec, attempt=attempt, on_line=forward)
            span.result(result)
            if not result.ok:
                stderr_tail = "\n".join(result.stderr.splitlines()[-_STDERR_LINES_IN_ERROR:])
                transient = result.exit_code in spec.transient_exit_codes
                raise StepFailedError(
                    f"exited with code {result.exit_code}"
                    + (" (declared transient; will retry)" if transient else "")
                    + (f"; last stderr lines:\n{stderr_tail}" if stderr_tail else ""),
                    step=spec.name,
                    exit_code=result.exit_code,
                    stderr_tail=stderr_tail,
                    transient_exit=transient,
                )
        except CircuitOpenError as exc:
            exc.attempt = attempt
            span.rejected(exc)
            wait = max(0.0, exc.probe_at - time.time())
            context = TaskRunContext.get()
            retries = context.task.retries if context is not None else 0
            if attempt <= retries and wait > 0:
                logger.warning("%s; waiting %.1f s for the probe before retrying", exc, wait)
                if facts is not None:
                    facts.add_breaker_wait(wait)
                with breaker_wait(exc.breaker, wait):
                    await asyncio.sleep(wait)
            raise
        except AiopError as exc:
            exc.attempt = attempt
            raise
    logger.info("%s finished in %.2f s", spec.name, result.duration_s)
    return result


@overload
async def run_step(
    spec: StepSpec,
    backend: str | None = ...,
    agent: str | None = ...,
    settings: Settings | None = ...,
    facts: StepFacts | None = ...,
    runner: StepRunner | None = ...,
    *,
    retry: RetryPolicy | None = ...,
    key: StepKey | None = ...,
    refresh_cache: bool = ...,
    first: FirstAttempt | None = ...,
    return_state: Literal[False] = ...,
) -> StepResult: ...


@overload
async def run_step(
    spec: StepSpec,
    backend: str | None = ...,
    agent: str | None = ...,
    settings: Settings | None = ...,
    facts: StepFacts | None = ...,
    runner: StepRunner | None = ...,
    *,
    retry: RetryPolicy | None = ...,
    key: StepKey | None = ...,
    refresh_cache: bool = ...,
    first: FirstAttempt | None = ...,
    return_state: Literal[True],
) -> State[StepResult]: ...


async def run_step(
    spec: StepSpec,
    backend: str | None = None,
    agent: str | None = None,
    settings: Settings | None = None,
    facts: StepFacts | None = None,
    runner: StepRunner | None = None,
    *,
    retry: RetryPolicy | None = None,
    key: StepKey | None = None,
    refresh_cache: bool = False,
    first: FirstAttempt | None = None,
    return_state: bool = False,
) -> StepResult | State[StepResult]:
    """Run one step as a ``run_step`` task run and return its :class:`~adapters.StepResult`.

    Retried as ``retry`` says (default: the retry settings' policy), from the task options of
    :func:`flows.runtime.retries.task_retry_options`; cached by the step's key, computed here once.

    Args:
        spec: the step to run.
        backend: ``auto``, ``dagger`` or ``local``; None: the ``backend`` setting.
        agent: the agent running the step, when one does (named in the task run's name and
            logged; not part of the cache key).
        settings: the platform settings (default: read from the environment once per call).
        facts: where the attempts record what they learn besides the result (the time waited
            for an open circuit's probe); passed by :func:`execute_step`.
        runner: the flow run's runner, resolved once for all its steps; None: resolved in the
            task from ``backend`` and the settings (no fault plan: a plan travels only with a
            resolved runner, :func:`adapters.selection.resolve_runner`).
        retry: the step's retry policy.
        key: what the step's cache key is made of, when the caller gathered it already.
        refresh_cache: run the step even when a result is cached under its key.
        first: the engine breaker's decision for the first attempt (:func:`execute_step`).
        return_state: return the task run's final state instead of its result.

    Raises:
        StepFailedError: the command exited non-zero (retried only if the exit code is declared
            transient in ``spec.transient_exit_codes``).
        InfrastructureError: the engine, the transport or the timeout failed (retried).
        InvalidInputError: the spec cannot run as written (never retried).

    Examples:
        >>> import asyncio
        >>> from prefect import flow
        >>> from adapters import StepSpec
        >>> from flows import run_step
        >>> @flow
        ... async def hello() -> str:
        ...     spec = StepSpec(name="hello", image="python:3.12-slim",
        ...                     args=["python", "-c", "print('hello')"])
        ...     return (await run_step(spec, backend="local")).stdout
        >>> asyncio.run(hello())  # doctest: +SKIP
        'hello\\n'
    """
    settings = settings if settings is not None else load_settings()
    task_ = _task(retry or settings.retry_policy(), refresh_cache)
    cache_key = _cache_key(spec, settings, key)
    args = _arguments(spec, backend, agent, settings, facts, runner, first, cache_key)
    if return_state:
        return await task_(*args, return_state=True)  # type: ignore[no-any-return]
    return await task_(*args)  # type: ignore[no-any-return]


def _arguments(
    spec: StepSpec,
    backend: str | None,
    agent: str | None,
    settings: Settings,
    facts: StepFacts | None,
    runner: StepRunner | None,
    first: FirstAttempt | None,
    cache_key: str | None,
) -> tuple[Any, ...]:
    """:data:`run_step_task`'s arguments, its objects marked ``opaque``: Prefect looks for
    futures and states in a task's arguments twice per task run (its inputs, then resolving
    them), walking every field of a pydantic model or dataclass, and these hold none (the
    settings alone are ~40 fields and two policies). The task gets the objects themselves."""
    return (
        opaque(spec),
        backend,
        agent,
        opaque(settings),
        opaque(facts),
        opaque(runner),
        opaque(first),
        cache_key,
    )


def _task(policy: RetryPolicy, refresh_cache: bool) -> Any:
    """:data:`run_step_task` with the retry options of ``policy``, cached by the key given as its
    ``cache_key`` argument.

    Made once per policy (``Task.with_options`` reads the task's source each time: about 1.3 ms),
    and again if Prefect's ``tasks.disable_caching`` setting changes (read when a task is made).
    """
    return _task_variant(policy, refresh_cache, get_current_settings().tasks.disable_caching)


@functools.lru_cache(maxsize=64)
def _task_variant(policy: RetryPolicy, refresh_cache: bool, caching_disabled: bool) -> Any:
    """The variant for these options (``caching_disabled`` only keys the memo)."""
    return run_step_task.with_options(
        **task_retry_options(policy),
        cache_key_fn=_given_key,
        refresh_cache=refresh_cache,
    )


def _engine_slot(limit: str | None) -> contextlib.AbstractAsyncContextManager[None]:
    """One slot of the Prefect global concurrency limit named ``limit`` (the ``engine_limit``
    setting, set by ``aiop deploy``), protecting the engine; none when unset."""
    return concurrency(limit, occupy=1, strict=False) if limit else contextlib.nullcontext()


async def execute_step(
    spec: StepSpec,
    backend: str | None = None,
    *,
    retry: RetryPolicy | None = None,
    agent: str | None = None,
    settings: Settings | None = None,
    runner: StepRunner | None = None,
    key: StepKey | None = None,
) -> StepOutcome:
    """Run ``run_step`` for ``spec`` inside a flow and report the outcome without raising.

    Args:
        spec: the step.
        backend: ``auto``, ``dagger``, ``local``, or None for the ``backend`` setting.
        retry: the step's retry policy (default: the retry settings' policy).
        settings: the platform settings (default: read from the environment once, here).
        agent: the agent running the step: named in the task run's name, and an
            ``aiop.agent.step.<state>`` event is emitted when it ends (:mod:`flows.runtime.events`).
        runner: the flow run's runner, resolved once (:func:`adapters.selection.resolve_runner`),
            with its fault plan; None: resolved here from ``backend``.
        key: what the step's cache key is made of, when the caller gathered it already (an
            agent run whose ``prepare`` named outputs after it).

    The engine's breaker decides the first attempt here. When it refuses and ``run_step`` would
    not wait for its probe (no retries, or a probe time past the retry budget), the step fails
    at once, in microseconds, without a task run (unless its result is cached: then the task run
    serves it). The cache is refreshed when an output of a cached run has since disappeared or
    changed (or something the platform did not write stands in its place), and for a step the
    active fault plan targets (:meth:`adapters.chaos.FaultPlan.targets`).

    Examples:
        >>> from prefect import flow
        >>> from adapters import StepSpec
        >>> @flow
        ... async def one() -> str:
        ...     spec = StepSpec(name="hello", image="python:3.12-slim", args=["echo", "hi"])
        ...     return (await execute_step(spec, "local")).state
    """
    settings = settings if settings is not None else load_settings()
    backend = backend or settings.backend
    with step_span(spec.name, agent=agent, backend=backend) as (span, owned):
        outcome = await _execute_step(spec, backend, retry, agent, settings, runner, key, span)
        span.finish(outcome, final=owned)
    return outcome


async def _execute_step(
    spec: StepSpec,
    backend: str,
    retry: RetryPolicy | None,
    agent: str | None,
    settings: Settings,
    runner: StepRunner | None,
    key: StepKey | None,
    span: StepSpan,
) -> StepOutcome:
    started, started_at = time.monotonic(), time.time()
    policy = retry or settings.retry_policy()
    if runner is None:
        try:
            runner = resolve_runner(
                backend,
                provision_timeout_s=settings.dagger_provision_timeout_s,
                cache_dir=settings.cache_dir,
            )
        except AiopError:
            runner = None  # a bad backend: the task run reports it
    plan = runner.plan if runner is not None else None
    # A drill must reach the steps it targets, so it never takes them from the cache.
    usable_cache = outputs_present(spec) and not (plan is not None and plan.targets(spec.name))
    cache_key = _cache_key(spec, settings, key)
    first: FirstAttempt | None = None
    if runner is not None:
        try:
            first = FirstAttempt(_engine_breaker(runner.breaker_name, settings).admit())
        except CircuitOpenError as refused:
            refused.step = spec.name
            waits = policy.retries > 0 and policy.within_budget(
                max(0.0, refused.probe_at - time.time())
            )
            if waits:  # the task run waits for the probe and retries: the wait shows on it
                first = FirstAttempt(refused)
            elif not (usable_cache and cache_key and await _has_cached_result(cache_key)):
                _run_logger().warning("%s (not started: no task run was created)", refused)
                span.rejected(refused)
                return _refused(spec, refused, agent, started, started_at)
    facts = StepFacts()
    try:
        state: State[StepResult] = await _task(policy, not usable_cache)(
            *_arguments(spec, backend, agent, settings, facts, runner, first, cache_key),
            return_state=True,
        )
    finally:
        if first is not None:
            first.release()
    duration = time.monotonic() - started
    outcome = await _outcome(spec, state, duration, started_at, facts.breaker_wait_s)
    if agent:
        emit_step_event(
            agent,
            outcome,
            state.state_details.task_run_id,
            agent_run_name(spec.name, agent),
        )
    return outcome


def _refused(
    spec: StepSpec, error: AiopError, agent: str | None, started: float, started_at: float
) -> StepOutcome:
    """The outcome of a step that did not start (no task run was created)."""
    outcome = StepOutcome(
        spec.name, "Failed", 0, time.monotonic() - started, error=error, started_at=started_at
    )
    if agent:
        emit_step_event(agent, outcome)
    return outcome


async def _outcome(
    spec: StepSpec, state: State[StepResult], duration: float, started_at: float, waited: float
) -> StepOutcome:
    if state.is_completed():
        result = await state.aresult()
        assert isinstance(result, StepResult)
        attempts = 0 if state.name == "Cached" else result.attempt
        return StepOutcome(
            spec.name,
            state.name or "Completed",
            attempts,
            duration,
            result=result,
            started_at=started_at,
            breaker_wait_s=waited,
        )
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        loaded = await state.aresult(raise_on_failure=False)
        error = loaded if isinstance(loaded, BaseException) else None
    attempts = getattr(error, "attempt", None) or 1
    return StepOutcome(
        spec.name,
        state.name or "Failed",
        attempts,
        duration,
        error=error,
        started_at=started_at,
        breaker_wait_s=waited,
    )


async def _has_cached_result(key: str) -> bool:
    """True when the result store holds a result under ``key``."""
    # The task's own store (the flow's has a null metadata storage that never finds the record).
    store = await get_result_store().update_for_task(run_step_task, _sync=False)  # type: ignore[call-arg,misc]
    return bool(await store.aexists(key))


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # outside a flow run
        return logging.getLogger("aiop.steps")
