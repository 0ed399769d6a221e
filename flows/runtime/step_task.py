"""``run_step``: the Prefect task that runs one StepSpec through a runner.

The task run is named after the step; the command is logged with secrets masked; output lines are
streamed to the run logger as they arrive. Infrastructure errors are retried with exponential backoff
and jitter; a non-zero exit fails the task at once (naming the step, the exit code and the last stderr
lines) unless the step declares that exit code transient.

Results are cached by the step's inputs and code: the key hashes the spec (secret values only as
HMACs under the installation key, :mod:`flows.runtime.installation_key`) and a fingerprint of every mounted
host path, and a cached result is used only while the step's outputs still hold what the platform
wrote there, as their manifests prove (:func:`adapters.ownership.output_present`;
:func:`execute_step` refreshes the cache otherwise, and for steps a fault plan targets).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import Task, get_run_logger, task
from prefect.client.schemas.objects import State
from prefect.concurrency.asyncio import concurrency
from prefect.context import TaskRunContext
from prefect.results import get_result_store
from prefect.runtime import task_run as runtime_task_run

from adapters import (
    AiopError,
    CircuitOpenError,
    StepFailedError,
    StepResult,
    StepSpec,
)
from adapters.breakers.breaker import get_breaker
from adapters.ownership import origin_of, output_present
from adapters.retry_policy import DEFAULT_RETRY_POLICY, RetryPolicy
from adapters.runner import Stream
from adapters.selection import StepRunner, resolve_runner
from adapters.settings import Settings, load_settings
from agents.recent import agent_run_name
from flows.runtime.breaker_events import attach_event_emitter
from flows.runtime.breaker_precheck import rejection_before_start
from flows.runtime.events import emit_step_event
from flows.runtime.installation_key import installation_key, keyed_digest
from flows.runtime.outcome import StepFacts, StepOutcome
from flows.runtime.trace_spans import StepSpan, attempt_span, breaker_wait, step_span

__all__ = [
    "StepFacts",
    "StepOutcome",
    "execute_step",
    "outputs_present",
    "retry_condition",
    "retry_condition_for",
    "run_step",
    "step_cache_key",
    "task_run_name",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Bump when the meaning of a cached StepResult changes, to invalidate every cached step.
CACHE_VERSION = "1"
_STDERR_LINES_IN_ERROR = 12


def retry_condition_for(policy: RetryPolicy) -> Callable[[Any, Any, State[Any]], bool]:
    """A Prefect ``retry_condition_fn``: :func:`retry_condition` within ``policy.budget_s``."""

    def condition(task: Any, task_run: Any, state: State[Any]) -> bool:
        started = getattr(task_run, "start_time", None)
        if started is not None:
            elapsed = (datetime.now(UTC) - started).total_seconds()
            if not policy.within_budget(elapsed):
                return False
        return retry_condition(task, task_run, state)

    return condition


def retry_condition(task: Any, task_run: Any, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry exactly the errors whose ``transient`` is True.

    Those are infrastructure errors, declared-transient exits and an open circuit (``run_step``
    has already waited until its probe time, so the retry arrives when the breaker lets a probe
    through instead of burning attempts in a burst). Invalid specs, bad input, permanent
    non-zero exits and anything outside the error tree are never retried.
    """
    exc = exception_of(state)
    return isinstance(exc, AiopError) and exc.transient


def exception_of(state: State[Any]) -> BaseException | None:
    """The exception a failed state carries, or None."""
    data = state.data
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False)
    except Exception as exc:  # a result that cannot be loaded is itself the best evidence
        return exc
    return result if isinstance(result, BaseException) else None


def step_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """Cache key of a ``run_step`` call: the spec, its secrets' HMACs and its inputs' fingerprint.

    A secret value enters the key only as an HMAC under the installation key (the file of the
    call's ``settings``), so the key (stored on the Prefect server) cannot be used to test
    guesses of it without that key file. The settings themselves are not part of the key.
    """
    spec = parameters.get("spec")
    if not isinstance(spec, StepSpec):
        return None
    settings = parameters.get("settings")
    key_file = settings.installation_key_file if isinstance(settings, Settings) else None
    data = spec.model_dump(mode="json", exclude={"secrets"})
    data["secrets"] = {
        k: keyed_digest(k, v.get_secret_value(), key_file) for k, v in sorted(spec.secrets.items())
    }
    digest = hashlib.sha256(CACHE_VERSION.encode())
    digest.update(json.dumps(data, sort_keys=True).encode())
    for host in sorted(spec.mounts):
        digest.update(host.encode())
        for entry in _fingerprint(Path(host)):
            digest.update(entry.encode())
    return f"{spec.name}-{digest.hexdigest()[:32]}"


def _fingerprint(path: Path) -> Iterator[str]:
    """Name, size and modification time of ``path`` and everything below it (bytecode ignored)."""
    if path.is_file():
        st = path.stat()
        yield f"{path.name}:{st.st_size}:{st.st_mtime_ns}"
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = Path(root, name)
            st = full.stat()
            yield f"{full.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}"


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


class _RunStepTask(Task[_P, _R]):
    """``run_step``'s task: a direct call is retried as its settings' retry policy says.

    ``execute_step`` (and tests) set the options themselves through ``with_options``, which
    returns a plain :class:`prefect.Task`.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        settings = kwargs.get("settings") or (args[3] if len(args) > 3 else None)
        if settings is None:
            settings = load_settings()
            if len(args) > 3:
                args = (*args[:3], settings, *args[4:])
            else:
                kwargs["settings"] = settings
        policy = settings.retry_policy()
        return self.with_options(
            retries=policy.retries,
            retry_delay_seconds=policy.delays(),
            retry_jitter_factor=policy.jitter,
            retry_condition_fn=retry_condition_for(policy),
        )(*args, **kwargs)


def _retried_as_configured(task_: Task[_P, _R]) -> _RunStepTask[_P, _R]:
    """``task_``, its options unchanged, as a :class:`_RunStepTask`."""
    task_.__class__ = _RunStepTask
    return task_  # type: ignore[return-value]


@_retried_as_configured
@task(
    name="run_step",
    task_run_name=task_run_name,  # type: ignore[arg-type]  # its Protocol has a classmethod too
    retries=DEFAULT_RETRY_POLICY.retries,
    retry_delay_seconds=DEFAULT_RETRY_POLICY.delays(),
    retry_jitter_factor=DEFAULT_RETRY_POLICY.jitter,
    retry_condition_fn=retry_condition_for(DEFAULT_RETRY_POLICY),
    cache_key_fn=step_cache_key,
    persist_result=True,
)
async def run_step(
    spec: StepSpec,
    backend: str | None = None,
    agent: str | None = None,
    settings: Settings | None = None,
    facts: StepFacts | None = None,
    runner: StepRunner | None = None,
) -> StepResult:
    """Run one step through a runner and return its :class:`~adapters.StepResult`.

    Retried as the retry settings say (the same policy an agent run applies
    over its agent's defaults): a direct call takes them from ``settings``.

    Args:
        spec: the step to run.
        backend: ``auto``, ``dagger`` or ``local``; None: the ``backend`` setting.
        agent: the agent running the step, when one does (named in the task run's name and
            logged; not part of the cache key).
        settings: the platform settings (default: read from the environment once per call).
        facts: where the attempts record what they learn besides the result (the time waited
            for an open circuit's probe); passed by :func:`execute_step`, not part of the cache
            key.
        runner: the flow run's runner, resolved once for all its steps (not part of the cache
            key); None: resolved here from ``backend`` and the settings (no fault plan: a plan
            travels only with a resolved runner, :func:`adapters.selection.resolve_runner`).

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
    logger = get_run_logger()
    settings = settings if settings is not None else load_settings()
    attempt = int(runtime_task_run.run_count or 1)
    if spec.secrets:
        # Its cache key is keyed by the installation key: a bad key file fails the step here, in
        # one paragraph, rather than only in Prefect's warning about the cache key while the step
        # runs uncached (InvalidInputError: never retried).
        installation_key(settings.installation_key_file)
    if runner is None:
        runner = resolve_runner(
            backend or settings.backend,
            provision_timeout_s=settings.dagger_provision_timeout_s,
            cache_dir=settings.cache_dir,
        )
    breaker = attach_event_emitter(
        get_breaker(
            runner.breaker_name,
            default_policy=settings.breaker_policy(),
            redis_url=settings.redis_url(),
        )
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

            async def on_engine() -> StepResult:
                async with _engine_slot(settings.engine_limit):
                    return await runner.runner.run(spec, attempt=attempt, on_line=forward)

            # The slot is taken inside the breaker: an open circuit rejects without waiting.
            result = await breaker.call(on_engine)
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


def _engine_slot(limit: str | None) -> contextlib.AbstractAsyncContextManager[None]:
    """One slot of the Prefect global concurrency limit named ``limit`` (the ``engine_limit``
    setting, set by ``python -m flows.ops.deploy``), protecting the engine; none when unset."""
    return concurrency(limit, occupy=1, strict=False) if limit else contextlib.nullcontext()


async def execute_step(
    spec: StepSpec,
    backend: str | None = None,
    *,
    retry: RetryPolicy | None = None,
    agent: str | None = None,
    settings: Settings | None = None,
    runner: StepRunner | None = None,
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
            with its fault plan; None: ``run_step`` resolves one from ``backend``.

    The engine's breaker is asked first: when it would reject the step and ``run_step`` would not
    wait for its probe (no retries, or a probe time past the retry budget), the step fails here,
    in microseconds, without a task run (unless its result is cached: then the task run serves
    it). The cache is refreshed when an output of a cached run has since disappeared or changed
    (or something the platform did not write stands in its place), and for a step the active
    fault plan targets (:meth:`adapters.chaos.FaultPlan.targets`).

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
        outcome = await _execute_step(spec, backend, retry, agent, settings, runner, span)
        span.finish(outcome, final=owned)
    return outcome


async def _execute_step(
    spec: StepSpec,
    backend: str,
    retry: RetryPolicy | None,
    agent: str | None,
    settings: Settings,
    runner: StepRunner | None,
    span: StepSpan,
) -> StepOutcome:
    started, started_at = time.monotonic(), time.time()
    policy = retry or settings.retry_policy()
    plan = runner.plan if runner is not None else None
    # A drill must reach the steps it targets, so it never takes them from the cache.
    usable_cache = outputs_present(spec) and not (plan is not None and plan.targets(spec.name))
    refused = rejection_before_start(
        backend,
        policy,
        step=spec.name,
        breaker_policy=settings.breaker_policy(),
        redis_url=settings.redis_url(),
        breaker_name=runner.breaker_name if runner is not None else None,
    )
    if refused is not None and usable_cache and await _has_cached_result(spec, settings):
        refused = None  # the task run serves the cached result without touching the engine
    if refused is not None:
        outcome = StepOutcome(
            spec.name, "Failed", 0, time.monotonic() - started, error=refused, started_at=started_at
        )
        _run_logger().warning("%s (not started: no task run was created)", refused)
        span.rejected(refused)
        if agent:
            emit_step_event(agent, outcome)
        return outcome
    facts = StepFacts()
    options = run_step.with_options(
        refresh_cache=not usable_cache,
        retries=policy.retries,
        retry_delay_seconds=policy.delays(),
        retry_jitter_factor=policy.jitter,
        retry_condition_fn=retry_condition_for(policy),
    )
    state: State[StepResult] = await options(
        spec, backend, agent, settings, facts, runner, return_state=True
    )  # type: ignore[misc]
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


async def _has_cached_result(spec: StepSpec, settings: Settings) -> bool:
    """True when the result store holds a result under ``spec``'s cache key."""
    key = step_cache_key(None, {"spec": spec, "settings": settings})  # type: ignore[arg-type]
    if key is None:
        return False
    # The task's own store (the flow's has a null metadata storage that never finds the record).
    store = await get_result_store().update_for_task(run_step, _sync=False)  # type: ignore[call-arg,misc]
    return bool(await store.aexists(key))


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # outside a flow run
        return logging.getLogger("aiop.steps")
