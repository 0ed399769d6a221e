"""``run_llm_step``: the Prefect task that runs one llm step, like ``run_step`` runs a container.

* **Retries by error class**: a provider that stays rate-limited or failing
  (:class:`~adapters.errors.ProviderUnavailableError`) and engine trouble are retried with the
  agent's backoff; a refused key, an unknown model and a passed budget are not.
* **A breaker per provider** (``llm:anthropic``, ``llm:openai``, ``llm:google``, ``llm:other``
  for an OpenAI-compatible endpoint), named after the provider the engine calls: it counts only
  the provider's refusals for now (:class:`~adapters.errors.ProviderUnavailableError`), so a
  provider that keeps failing is left alone for a while by every agent that uses it, and a bad
  key or budget never opens it. The engine's own errors count against the engine's breaker, which
  admits each attempt too: one decision over both (:func:`adapters.breakers.breaker.admit_all`).
* **Cached by prompt, inputs and model**: the key hashes the spec (model, rendered prompt, input
  and output bindings, budget, the key's *name*) and a fingerprint of every input path; the key's
  value never enters it. A resumed run with the same inputs gets the earlier result back without
  paying for the model again, as long as the outputs are still as written.
* **Token usage as an artifact**: each run publishes a task-run markdown artifact with the calls
  and tokens it used against its budget.

Examples:
    >>> from prefect import flow
    >>> from adapters.llm_contract import LlmSpec
    >>> @flow
    ... async def ask() -> str:
    ...     spec = LlmSpec(name="ask", prompt="Say hi.", key_name="ANTHROPIC_API_KEY")
    ...     return (await execute_llm_step(spec)).state
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext
from prefect.runtime import task_run as runtime_task_run

from adapters.breakers.breaker import admit_all, get_breaker
from adapters.contract import StepResult
from adapters.errors import AiopError, BudgetExceededError
from adapters.llm_contract import LlmResult, LlmSpec, TokenUsage
from adapters.llm_route import EngineConfig
from adapters.ownership import MANIFEST, output_present
from adapters.retry_policy import DEFAULT_RETRY_POLICY, RetryPolicy
from adapters.runner import Stream
from adapters.selection import engine_breaker_name
from adapters.settings import Settings, load_settings
from agents.recent import agent_run_name
from flows.runtime.cache_key import fingerprint
from flows.runtime.events import attach_event_emitter, emit_step_event
from flows.runtime.outcome import StepOutcome
from flows.runtime.retries import task_retry_options
from flows.runtime.trace_spans import llm_attempt_span, step_span

__all__ = [
    "execute_llm_step",
    "llm_cache_key",
    "provider_breaker_name",
    "render_usage",
    "run_llm_step",
]

#: Bump when the meaning of a cached LlmResult changes.
CACHE_VERSION = "1"


def provider_of(spec: LlmSpec) -> str:
    """The provider the engine will call for the step: the named model's, else the provider of
    the engine's default model as this process's configuration makes it (``.env``, environment).
    """
    if spec.model is None:
        route = EngineConfig().route(None)
        if route is not None:
            return route.provider
    return spec.provider


def provider_breaker_name(spec: LlmSpec) -> str:
    """The breaker of the provider the engine calls: ``llm:<provider>`` (``other``: an
    OpenAI-compatible endpoint)."""
    return f"llm:{provider_of(spec)}"


def llm_cache_key(context: TaskRunContext | None, parameters: dict[str, Any]) -> str | None:
    """Cache key of a ``run_llm_step`` call: the spec and a fingerprint of its input paths.

    The provider key's value is not part of it (only its name is, inside the spec).
    """
    spec = parameters.get("spec")
    if not isinstance(spec, LlmSpec):
        return None
    digest = hashlib.sha256(CACHE_VERSION.encode())
    # Whether the trace may show the content changes nothing the model does.
    digest.update(
        json.dumps(spec.model_dump(mode="json", exclude={"trace_content"}), sort_keys=True).encode()
    )
    for name, item in sorted(spec.inputs.items()):
        if item.kind != "string":
            digest.update(name.encode())
            for entry in _input_fingerprint(spec, Path(item.value)):
                digest.update(entry.encode())
    return f"llm-{spec.name}-{digest.hexdigest()[:32]}"


def _input_fingerprint(spec: LlmSpec, path: Path) -> list[str]:
    """The input's fingerprint without the step's own outputs (and the manifest recording them),
    so an output written inside an input folder (summary.md in the result folder it summarizes)
    does not change the key of the run that wrote it."""
    own = {MANIFEST} | {
        str(Path(o.path).relative_to(path))
        for o in spec.outputs.values()
        if Path(o.path).is_relative_to(path)
    }
    return [e for e in fingerprint(path) if e.rsplit(":", 2)[0] not in own]


def render_usage(spec: LlmSpec, result: LlmResult | BudgetExceededError) -> str:
    """The token-usage artifact: calls and tokens against the budget, and the outputs written
    (or, for a run its budget stopped, what it had used when it was stopped)."""
    if isinstance(result, BudgetExceededError):
        usage = TokenUsage.model_validate(result.usage or {})
        calls, outputs = result.api_calls or 0, {}
        head = (
            f"Model **{spec.model or 'default'}** ({provider_of(spec)}), attempt"
            f" {result.attempt or 1}: **stopped at `{result.limit}`** (budget {result.allowed},"
            f" used {result.used}); no output was written."
        )
    else:
        usage, calls, outputs = result.usage, result.api_calls, result.outputs
        head = (
            f"Model **{result.model}** ({provider_of(spec)}), attempt {result.attempt},"
            f" {result.duration_s:.2f} s."
        )
    lines = [
        f"# Model usage of `{spec.name}`",
        "",
        head,
        "",
        "| measure | used | budget |",
        "| --- | ---: | ---: |",
        f"| API calls | {calls} | {spec.budget.max_api_calls} |",
        f"| tokens (counted, all calls) | {usage.spent} | {spec.budget.max_tokens} |",
        f"| input tokens | {usage.input_tokens} | |",
        f"| output tokens | {usage.output_tokens} | |",
        f"| cached token reads | {usage.cached_token_reads} | |",
        f"| cached token writes | {usage.cached_token_writes} | |",
        "",
    ]
    lines += [f"- output `{name}` -> `{path}`" for name, path in sorted(outputs.items())]
    return "\n".join(lines) + "\n"


def _task_run_name(parameters: dict[str, Any]) -> str:
    spec = parameters["spec"]
    name = spec.name if isinstance(spec, LlmSpec) else str(spec)
    return agent_run_name(name, parameters.get("agent"))


@task(
    name="run_llm_step",
    task_run_name=_task_run_name,  # type: ignore[arg-type]
    **task_retry_options(DEFAULT_RETRY_POLICY),
    cache_key_fn=llm_cache_key,
    persist_result=True,
)
async def run_llm_step(
    spec: LlmSpec, agent: str | None = None, settings: Settings | None = None
) -> LlmResult:
    """Run one llm step on the Dagger engine, each attempt admitted once by the engine's breaker
    and the provider's (each counts only its own errors).

    The engine reads the provider key itself (ADR 0021); the runner reads it where the engine
    does (``.env``, then the environment) only to mask it in logs and messages.

    Raises:
        BudgetExceededError, ProviderKeyError, UnknownModelError, InvalidSpecError: permanent.
        ProviderUnavailableError, InfrastructureError: retried.
        CircuitOpenError: the provider's breaker is open.
    """
    from prefect.artifacts import acreate_markdown_artifact

    from adapters.dagger.llm import DaggerLlmRunner  # imported on demand: dagger is heavy
    from adapters.dagger.runner import DaggerRunner

    logger = get_run_logger()
    settings = settings if settings is not None else load_settings()
    attempt = int(runtime_task_run.run_count or 1)
    breakers = [
        attach_event_emitter(
            get_breaker(
                name, default_policy=settings.breaker_policy(), redis_url=settings.redis_url()
            )
        )
        for name in (engine_breaker_name("dagger"), provider_breaker_name(spec))
    ]
    logger.info(
        "%s (%smodel %s, attempt %d, budget %d calls / %d tokens)",
        *(spec.name, f"agent {agent}, " if agent else "", spec.model or "default", attempt),
        *(spec.budget.max_api_calls, spec.budget.max_tokens),
    )

    def forward(stream: Stream, line: str) -> None:
        logger.info("%s", line)

    async def on_engine() -> LlmResult:
        runner = DaggerLlmRunner(
            DaggerRunner(provision_timeout_s=settings.dagger_provision_timeout_s)
        )
        return await runner.run(spec, attempt=attempt, on_line=forward)

    async def publish(done: LlmResult | BudgetExceededError) -> None:
        await acreate_markdown_artifact(
            render_usage(spec, done),
            key=re.sub(r"[^a-z0-9-]", "-", f"llm-usage-{spec.name}"),
            description=f"Model calls and tokens of {spec.name}",
        )

    traced = llm_attempt_span(
        spec, attempt, breaker=breakers[-1], agent=agent, provider=provider_of(spec)
    )
    with traced as span:  # current while the model runs: its calls' spans are its children
        try:
            async with admit_all(breakers):
                result = await on_engine()
        except AiopError as exc:
            exc.attempt = attempt
            if isinstance(exc, BudgetExceededError):  # what the stopped run cost is worth seeing
                spent = TokenUsage.model_validate(exc.usage).spent if exc.usage else None
                span.stopped(exc.api_calls, spent)
                await publish(exc)
            raise
        span.result(result)
    await publish(result)
    logger.info(
        "%s finished in %.2f s: %d model calls, %d tokens",
        *(spec.name, result.duration_s, result.api_calls, result.usage.spent),
    )
    return result


def as_step_result(result: LlmResult) -> StepResult:
    """The llm result in the container steps' shape: exit 0, the reply as stdout."""
    return StepResult(
        step=result.step,
        exit_code=0,
        stdout=result.reply,
        stderr="",
        duration_s=result.duration_s,
        outputs=dict(result.outputs),
        backend="dagger",
        attempt=result.attempt,
    )


async def execute_llm_step(
    spec: LlmSpec,
    *,
    retry: RetryPolicy | None = None,
    agent: str | None = None,
    settings: Settings | None = None,
) -> StepOutcome:
    """Run ``run_llm_step`` for ``spec`` inside a flow and report the outcome without raising.

    The cache is refreshed when an output of a cached run has since disappeared or changed (or
    something the platform did not write stands in its place).
    """
    with step_span(spec.name, agent=agent, backend="dagger") as (span, owned):
        outcome = await _execute_llm_step(spec, retry, agent, settings)
        span.finish(outcome, final=owned)
    return outcome


async def _execute_llm_step(
    spec: LlmSpec, retry: RetryPolicy | None, agent: str | None, settings: Settings | None
) -> StepOutcome:
    started, started_at = time.monotonic(), time.time()
    settings = settings if settings is not None else load_settings()
    policy = retry or settings.retry_policy()
    usable_cache = all(output_present(Path(o.path)) for o in spec.outputs.values())
    options = run_llm_step.with_options(
        refresh_cache=not usable_cache, **task_retry_options(policy)
    )
    state: State[LlmResult] = await options(spec, agent, settings, return_state=True)  # type: ignore[misc]
    duration = time.monotonic() - started
    if state.is_completed():
        result = await state.aresult()
        assert isinstance(result, LlmResult)
        outcome = StepOutcome(
            spec.name,
            state.name or "Completed",
            0 if state.name == "Cached" else result.attempt,
            duration,
            result=as_step_result(result),
            started_at=started_at,
            llm=result,
        )
    else:
        error = state.data if isinstance(state.data, BaseException) else None
        if error is None:
            loaded = await state.aresult(raise_on_failure=False)
            error = loaded if isinstance(loaded, BaseException) else None
        outcome = StepOutcome(
            spec.name,
            state.name or "Failed",
            getattr(error, "attempt", None) or 1,
            duration,
            error=error,
            started_at=started_at,
        )
    if agent:
        emit_step_event(
            agent, outcome, state.state_details.task_run_id, agent_run_name(spec.name, agent)
        )
    return outcome
