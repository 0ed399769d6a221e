"""The spans of a run: its root, one span per step, one per attempt (OpenTelemetry).

One trace per flow run, built on the spans Prefect 3.9 already emits once a tracer provider is
installed (``prefect/telemetry/run_telemetry.py``: a flow-run span and a task-run span per task
run, the task-run span current in the task's body and covering all its attempts, its parent the
span current where the task is *called*)::

    <flow run>                        Prefect's flow-run span (aiop.flow.name)
    └─ step validate                  step_span: one per step of the flow (capability, agent,
       │                              outcome, cached, attempts, rows; fallback events)
       └─ validate [validate-duckdb]  Prefect's task-run span (events Running, Retrying, Cached)
          ├─ attempt 1                attempt_span: exit code, error class, transient, breaker
          │  └─ Container.withExec    the engine's spans (Dagger), or the step program's own
          └─ attempt 2

An llm step's attempt is the GenAI agent span ``invoke_agent <agent>`` (:func:`llm_attempt_span`),
with one ``chat <model>`` span per model call under it (:func:`adapters.tracing.model_call`).

Nothing here costs anything while tracing is off: every function returns a no-op handle at once
(:func:`adapters.tracing.active`). :func:`traced_run` is applied to a flow: it installs the provider
from the settings when the entry point did not, and when Prefect's flow-run span does not record
(the provider came too late for it, or Prefect's telemetry is off) it opens the run's root itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from adapters import tracing
from adapters.errors import AiopError, CircuitOpenError, InvalidInputError
from adapters.settings import Settings, load_settings

if TYPE_CHECKING:
    from adapters.breakers.breaker import Breaker
    from adapters.contract import StepResult
    from adapters.llm_contract import LlmResult, LlmSpec
    from flows.runtime.outcome import StepOutcome

__all__ = [
    "AttemptSpan",
    "LlmAttemptSpan",
    "StepSpan",
    "attempt_span",
    "breaker_wait",
    "llm_attempt_span",
    "run_root",
    "step_span",
    "traced_run",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_log = logging.getLogger("aiop.tracing")


def _message(exc: BaseException) -> str:
    """An error's first line, short, without the stderr lines a failed step's message announces
    (they are in the ``exception`` event); the exporter masks secrets in it."""
    text = str(exc).strip().split("; last stderr lines:", 1)[0]
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _record_error(span: trace.Span, exc: BaseException) -> None:
    attributes: dict[str, Any] = {"error.type": type(exc).__name__}
    if isinstance(exc, AiopError):
        attributes["aiop.error.transient"] = bool(exc.transient)
    span.set_attributes(attributes)
    span.set_status(Status(StatusCode.ERROR, _message(exc)))


# -- the run --------------------------------------------------------------------------------------


@contextlib.contextmanager
def run_root(flow: str, settings: Settings | None = None) -> Iterator[str | None]:
    """The run's trace, in a flow's body: yields its trace id (None when nothing is recorded).

    Installs the provider from ``settings`` (default: read from the environment; a bad value is
    left to the flow to report) unless the process already has. When Prefect's flow-run span is
    current and records, it is the root: it gets ``aiop.flow.name``. Otherwise (the provider came
    after the flow run started, e.g. in a worker, or Prefect's telemetry is off) a root span
    ``flow <name>`` is opened here, under ``TRACEPARENT`` when one is set.
    """
    parent_header: str | None = None
    try:
        settings = settings if settings is not None else load_settings()
        tracing.configure(settings.trace_config())
        parent_header = settings.traceparent
    except InvalidInputError:
        pass  # the flow reports it when it reads the settings
    if not tracing.active():
        yield None
        return
    current = trace.get_current_span()
    config = tracing.config()
    if current.is_recording():
        current.set_attribute("aiop.flow.name", flow)
        trace_id = tracing.current_trace_id()
        _say(trace_id, config)
        yield trace_id
        return
    parent = otel_context.Context()
    if parent_header:
        parent = TraceContextTextMapPropagator().extract({"traceparent": parent_header})
    with tracing.tracer().start_as_current_span(
        f"flow {flow}", context=parent, attributes={"aiop.flow.name": flow}
    ):
        trace_id = tracing.current_trace_id()
        _say(trace_id, config)
        yield trace_id


def _say(trace_id: str | None, config: tracing.TraceConfig | None) -> None:
    """One log line in the run: which trace, where it goes, and its link when one is set."""
    if trace_id is None:
        return
    link = tracing.trace_link(trace_id)
    where = config.endpoint_text() if config is not None else "the application's exporter"
    text = f"tracing: trace {trace_id}, spans go to {where}" + (f"; {link}" if link else "")
    try:
        from prefect import get_run_logger

        get_run_logger().info("%s", text)
    except Exception:  # outside a flow run
        _log.info("%s", text)


def traced_run(
    flow: str,
) -> Callable[[Callable[_P, Coroutine[Any, Any, _R]]], Callable[_P, Coroutine[Any, Any, _R]]]:
    """Run an async flow function's body inside :func:`run_root` (its ``settings`` argument, when
    given, decides the configuration). Apply it under ``@flow``."""

    def wrap(fn: Callable[_P, Coroutine[Any, Any, _R]]) -> Callable[_P, Coroutine[Any, Any, _R]]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        async def body(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            settings = signature.bind_partial(*args, **kwargs).arguments.get("settings")
            with run_root(flow, settings if isinstance(settings, Settings) else None):
                return await fn(*args, **kwargs)

        return body

    return wrap


# -- steps ----------------------------------------------------------------------------------------


class StepSpan:
    """The span of one step of a flow (no-op when nothing is recorded).

    Opened by whoever runs the step first: :func:`flows.runtime.agent_run.run_agent` (which may try several
    agents) or, called directly, :func:`flows.runtime.step_task.execute_step`; a :func:`step_span` inside an
    open one of the same context adds to it instead of nesting.
    """

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self._rejected = False

    @property
    def recording(self) -> bool:
        """Attributes and events are kept."""
        return self.span.is_recording()

    def describe(self, **attributes: str | int | None) -> None:
        """Set ``aiop.<key>`` attributes (dots for underscores); None values are skipped."""
        if self.recording:
            self.span.set_attributes(
                {f"aiop.{k.replace('_', '.')}": v for k, v in attributes.items() if v is not None}
            )

    def refused(self, agent: str, error: BaseException) -> None:
        """An agent was refused before it ran (a missing secret, no engine, no key)."""
        if self.recording:
            self.span.add_event(
                "aiop.agent.refused",
                {
                    "aiop.agent.name": agent,
                    "error.type": type(error).__name__,
                    "aiop.reason": _message(error),
                },
            )

    def rejected(self, error: CircuitOpenError, *, agent: str | None = None) -> None:
        """A breaker refused the step (or one agent of it) without running anything."""
        if not self.recording:
            return
        attributes: dict[str, Any] = {
            "aiop.breaker.name": error.breaker,
            "aiop.breaker.probe_at": float(error.probe_at),
        }
        if agent is not None:
            attributes["aiop.agent.name"] = agent
        self.span.add_event("aiop.breaker.rejected", attributes)
        if agent is None:  # the step itself did not start
            self._rejected = True

    def fallback(self, from_agent: str, to_agent: str, error: BaseException | None) -> None:
        """The step moves on to another agent after ``from_agent`` could not do it."""
        if self.recording:
            attributes: dict[str, Any] = {"aiop.agent.from": from_agent, "aiop.agent.to": to_agent}
            if error is not None:
                attributes["error.type"] = type(error).__name__
            self.span.add_event("aiop.agent.fallback", attributes)

    def finish(
        self, outcome: StepOutcome, rows: Mapping[str, int] | None = None, *, final: bool = True
    ) -> None:
        """Record how the step went (``final``: also its status; an outer owner decides last)."""
        if not self.recording:
            return
        state = "Rejected" if self._rejected else outcome.state
        attributes: dict[str, Any] = {
            "aiop.step.outcome": state,
            "aiop.step.cached": outcome.state == "Cached",
            "aiop.step.attempts": outcome.attempts,
        }
        if outcome.breaker_wait_s:
            attributes["aiop.breaker.wait_s"] = round(outcome.breaker_wait_s, 3)
        if outcome.result is not None:
            attributes["aiop.backend"] = outcome.result.backend
        for key, value in (rows or {}).items():
            attributes[f"aiop.rows.{key}"] = int(value)
        self.span.set_attributes(attributes)
        if not final:
            return
        if outcome.error is not None:
            _record_error(self.span, outcome.error)
        else:
            self.span.set_status(Status(StatusCode.OK))


#: The step span open in this context (an inner :func:`step_span` joins it).
_STEP: contextvars.ContextVar[StepSpan | None] = contextvars.ContextVar("aiop_step", default=None)
_NO_STEP = StepSpan(trace.INVALID_SPAN)


@contextlib.contextmanager
def step_span(
    step: str,
    *,
    agent: str | None = None,
    capability: str | None = None,
    candidates: Sequence[str] = (),
    backend: str | None = None,
) -> Iterator[tuple[StepSpan, bool]]:
    """The span ``step <name>`` of one step; yields it and whether this block owns it.

    Inside an open step span of the same context, that one is yielded (``owns`` False): the agent
    runner opens it, the execute helper adds its facts. Its task runs' spans become its children
    (Prefect parents a task-run span under the span current where the task is called).
    """
    outer = _STEP.get()
    if outer is not None:
        outer.describe(agent_name=agent, backend=backend)
        yield outer, False
        return
    if not tracing.active():
        yield _NO_STEP, True
        return
    attributes: dict[str, Any] = {"aiop.step.name": step}
    for key, value in (("aiop.agent.name", agent), ("aiop.capability", capability),
                       ("aiop.backend", backend)):  # fmt: skip
        if value is not None:
            attributes[key] = value
    if candidates:
        attributes["aiop.agent.candidates"] = list(candidates)
    with tracing.tracer().start_as_current_span(
        f"step {step}", attributes=attributes, record_exception=False
    ) as span:
        opened = StepSpan(span)
        token = _STEP.set(opened)
        try:
            yield opened, True
        finally:
            _STEP.reset(token)


# -- attempts -------------------------------------------------------------------------------------


class AttemptSpan:
    """One attempt of a container step (no-op when nothing is recorded)."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def result(self, result: StepResult) -> None:
        """The command ran: its exit code."""
        if self.span.is_recording():
            self.span.set_attribute("process.exit.code", result.exit_code)

    def rejected(self, error: CircuitOpenError) -> None:
        """The breaker refused this attempt (an event with its probe time)."""
        if self.span.is_recording():
            self.span.add_event(
                "aiop.breaker.rejected",
                {
                    "aiop.breaker.name": error.breaker,
                    "aiop.breaker.probe_at": float(error.probe_at),
                },
            )


_NO_ATTEMPT = AttemptSpan(trace.INVALID_SPAN)


def _breaker_state(breaker: Breaker) -> str | None:
    try:
        return breaker.state
    except Exception:  # a state that cannot be read is not worth failing the step for
        return None


@contextlib.contextmanager
def _attempt(name: str, attributes: dict[str, Any], kind: SpanKind) -> Iterator[trace.Span]:
    with tracing.tracer().start_as_current_span(
        name, kind=kind, attributes=attributes, record_exception=False,
        set_status_on_exception=False,
    ) as span:  # fmt: skip
        try:
            yield span
        except BaseException as exc:
            _record_error(span, exc)
            if isinstance(exc, AiopError):  # its message is already scrubbed of secrets
                span.record_exception(exc)
            raise
        else:
            span.set_status(Status(StatusCode.OK))


@contextlib.contextmanager
def attempt_span(
    step: str,
    attempt: int,
    *,
    backend: str,
    breaker: Breaker,
    agent: str | None = None,
    secrets: Sequence[str] = (),
) -> Iterator[AttemptSpan]:
    """The span ``attempt <n>`` of one attempt of a container step, current while it runs: the
    runner passes it on (``TRACEPARENT``, or the engine requests' ``traceparent``).

    ``secrets`` (the step's secret values) are masked in every span from now on. An exception
    leaving the block sets ``error.type``, ``aiop.error.transient`` and an error status.
    """
    if not tracing.active():
        yield _NO_ATTEMPT
        return
    tracing.register_secrets(secrets)
    attributes: dict[str, Any] = {
        "aiop.step.name": step,
        "aiop.attempt": attempt,
        "aiop.backend": backend,
        "aiop.breaker.name": breaker.name,
    }
    state = _breaker_state(breaker)
    if state is not None:
        attributes["aiop.breaker.state"] = state
    if agent is not None:
        attributes["aiop.agent.name"] = agent
    with _attempt(f"attempt {attempt}", attributes, SpanKind.INTERNAL) as span:
        yield AttemptSpan(span)


@contextlib.contextmanager
def breaker_wait(breaker: str, wait_s: float) -> Iterator[None]:
    """The span ``breaker wait`` around waiting for an open circuit's probe time."""
    if not tracing.active():
        yield
        return
    with tracing.tracer().start_as_current_span(
        "breaker wait", attributes={"aiop.breaker.name": breaker, "aiop.breaker.wait_s": wait_s}
    ):
        yield


class LlmAttemptSpan:
    """One attempt of an llm step, the GenAI agent span (no-op when nothing is recorded)."""

    def __init__(self, span: trace.Span, spec: LlmSpec | None) -> None:
        self.span = span
        self.spec = spec

    def result(self, result: LlmResult) -> None:
        """The model's run: model, calls and token totals (and the reply, when opted in)."""
        if not self.span.is_recording() or self.spec is None:
            return
        usage = result.usage
        input_tokens = usage.input_tokens
        if self.spec.provider == "anthropic":  # see adapters.tracing.ModelCall.usage
            input_tokens += usage.cached_token_reads + usage.cached_token_writes
        self.span.set_attributes(
            {
                "gen_ai.response.model": result.model,
                "aiop.llm.api_calls": result.api_calls,
                "aiop.llm.tokens_spent": usage.spent,
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": usage.cached_token_reads,
                "gen_ai.usage.cache_creation.input_tokens": usage.cached_token_writes,
            }
        )
        if self.spec.trace_content:
            self.span.set_attribute(
                "gen_ai.output.messages",
                tracing.masked(tracing.content_messages("assistant", result.reply)),
            )

    def stopped(self, calls: int | None, spent: int | None) -> None:
        """The budget stopped the run after ``calls`` model calls and ``spent`` tokens."""
        if self.span.is_recording():
            self.span.set_attributes(
                {
                    k: v
                    for k, v in (("aiop.llm.api_calls", calls), ("aiop.llm.tokens_spent", spent))
                    if v is not None
                }
            )


@contextlib.contextmanager
def llm_attempt_span(
    spec: LlmSpec, attempt: int, *, breaker: Breaker, agent: str | None, provider: str
) -> Iterator[LlmAttemptSpan]:
    """The span ``invoke_agent <agent>`` of one attempt of an llm step (kind CLIENT: the agent's
    loop runs in the engine), with the GenAI agent attributes and the budget's limits.

    The prompt goes on the span only when the agent opted in (``llm.trace_content``), masked like
    the step's logs; otherwise no prompt, reply or key appears anywhere on the trace.
    """
    if not tracing.active():
        yield LlmAttemptSpan(trace.INVALID_SPAN, None)
        return
    name = agent or spec.name
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": name,
        "gen_ai.provider.name": tracing.GENAI_PROVIDERS.get(provider, provider),
        "aiop.step.name": spec.name,
        "aiop.attempt": attempt,
        "aiop.backend": "dagger",
        "aiop.breaker.name": breaker.name,
        "aiop.llm.budget.max_api_calls": spec.budget.max_api_calls,
        "aiop.llm.budget.max_tokens": spec.budget.max_tokens,
    }
    if spec.model:
        attributes["gen_ai.request.model"] = spec.model
    if agent is not None:
        attributes["aiop.agent.name"] = agent
    state = _breaker_state(breaker)
    if state is not None:
        attributes["aiop.breaker.state"] = state
    with _attempt(f"invoke_agent {name}", attributes, SpanKind.CLIENT) as span:
        traced = LlmAttemptSpan(span, spec)
        try:
            yield traced
        finally:
            if spec.trace_content and span.is_recording():
                span.set_attribute(
                    "gen_ai.input.messages",
                    tracing.masked(tracing.content_messages("user", spec.prompt)),
                )
