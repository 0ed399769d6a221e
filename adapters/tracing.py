"""One OpenTelemetry trace per run: the provider, the context the runners pass on, model calls.

The flows make the run's spans (:mod:`flows.runtime.trace_spans`); this module is what every layer below
them needs:

* :func:`configure` installs the process's tracer provider from a :class:`TraceConfig` (built by
  :meth:`adapters.settings.Settings.trace_config` from the standard ``OTEL_*`` variables). With no
  exporter configured it installs **nothing**: no provider, no processor, no exporter import; the
  API's no-op tracer stays, and every helper here returns at once (:func:`active` is False).
  Spans are exported through a masking exporter (:mod:`adapters._trace_export`): every secret value
  registered with :func:`register_secrets`, and every credential in a URL, is masked in span
  attributes, events, status messages and the resource.
* :func:`process_environment` gives a step's host process ``TRACEPARENT`` (the W3C trace context of
  the current span, as the OpenTelemetry environment-carrier specification names it) and the
  traces-only exporter variables, so a step program that emits spans joins the run's trace.
* :func:`engine_requests` and :func:`engine_cli_environment` are the Dagger room's part. The Python
  SDK injects the current span's ``traceparent`` into every HTTP request (dagger-io 0.21.11,
  ``client/_session.py``: ``TelemetryTransport``), and the CLI and the engine parent the spans of
  that request under it (dagger/dagger v0.21.8, ``engine/client/client.go`` ``ServeHTTP`` and
  ``engine/server/session.go`` ``serveHTTPToClient``): whatever span is current around an awaited
  Dagger call is the parent of the engine's spans for it. :func:`engine_requests` can make those
  requests *unsampled*, so that the engine records nothing for them (an llm step whose agent did
  not opt in to content: the engine's spans and logs would carry the prompt).
* :func:`model_call` is the span of one model API call, with the OpenTelemetry GenAI semantic
  conventions (``chat {model}``, ``gen_ai.*``).

Examples:
    >>> active()  # nothing configured in this process
    False
    >>> process_environment().variables
    {}
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import quote

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from adapters.redaction import redact_url

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from adapters._trace_export import MaskingExporter, Secrets

__all__ = [
    "GENAI_PROVIDERS",
    "TRACER_NAME",
    "ModelCall",
    "ProcessTrace",
    "TraceConfig",
    "active",
    "config",
    "configure",
    "content_messages",
    "continued",
    "current_trace_id",
    "engine_cli_environment",
    "engine_requests",
    "flush",
    "masked",
    "model_call",
    "process_environment",
    "register_secrets",
    "shutdown",
    "trace_link",
    "tracer",
]

#: The instrumentation scope of the platform's own spans.
TRACER_NAME = "aiop"
#: The platform's llm provider -> ``gen_ai.provider.name`` (OpenTelemetry GenAI conventions; the
#: Gemini API the engine calls with ``GEMINI_API_KEY`` is ``gcp.gemini``; an OpenAI-compatible
#: endpoint of no known provider stays ``other``).
GENAI_PROVIDERS = {"anthropic": "anthropic", "openai": "openai", "google": "gcp.gemini"}

logger = logging.getLogger("aiop.tracing")
_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(frozen=True, kw_only=True)
class TraceConfig:
    """Where the process's spans go, as the settings say (:meth:`adapters.settings.Settings.
    trace_config`); this module reads no environment itself.

    Attributes:
        exporter: ``otlp``, ``console`` (to stderr) or ``none`` (nothing is recorded).
        traces_url: the OTLP traces endpoint (the full URL: ``.../v1/traces`` for HTTP).
        protocol: ``http/protobuf`` or ``grpc`` (the ``otlp-grpc`` extra).
        headers: sent with every export (authentication): secret, never shown.
        timeout_s: the exporter's limit per export, retries included.
        service_name: ``service.name`` of the resource.
        resource: the other resource attributes.
        parent: a W3C ``traceparent`` the run's root span is a child of (a traced CI job).
        url_template: a link to a trace in the backend, ``{trace_id}`` filled in.
        engine: the Dagger CLI the platform starts exports the engine's spans too.
        flush_timeout_s: the longest the process waits at exit for its last spans to be sent.
    """

    exporter: Literal["none", "otlp", "console"] = "none"
    traces_url: str | None = None
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout_s: float = 10.0
    service_name: str = "aiop"
    resource: Mapping[str, str] = field(default_factory=dict)
    parent: str | None = None
    url_template: str | None = None
    engine: bool = True
    flush_timeout_s: float = 5.0

    @property
    def exports_otlp(self) -> bool:
        """Spans go to an OTLP endpoint."""
        return self.exporter == "otlp" and self.traces_url is not None

    def exporter_environment(self, service: str | None = None) -> dict[str, str]:
        """The traces-only ``OTEL_*`` variables that send a child process's spans where this
        process's go (empty unless over OTLP): endpoint, protocol, headers, service name.

        Examples:
            >>> config = TraceConfig(exporter="otlp", traces_url="http://c:4318/v1/traces",
            ...                      headers={"authorization": "Bearer t"})
            >>> config.exporter_environment("aiop-step")["OTEL_EXPORTER_OTLP_HEADERS"]
            'authorization=Bearer%20t'
        """
        if not self.exports_otlp or self.traces_url is None:
            return {}
        env = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": self.traces_url,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": self.protocol,
        }
        if self.headers:
            # The engine's CLI reads only the generic headers variable (dagger/otel-go).
            env["OTEL_EXPORTER_OTLP_HEADERS"] = ",".join(
                f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in self.headers.items()
            )
        if service:
            env["OTEL_SERVICE_NAME"] = service
        return env

    def endpoint_text(self) -> str:
        """Where spans go, for a log line (credentials redacted)."""
        if self.exporter == "console":
            return "the console (stderr)"
        return redact_url(self.traces_url) if self.traces_url else "nowhere"


@dataclass
class _State:
    config: TraceConfig
    secrets: Secrets
    provider: Any = None  # the SDK TracerProvider
    masking: MaskingExporter | None = None
    adopted: bool = False
    closed: bool = False


#: The configuration given to :func:`configure` (also when it recorded nothing).
_CONFIG: TraceConfig | None = None
#: Set when spans are recorded in this process.
_STATE: _State | None = None
_LOCK = threading.Lock()


def configure(config: TraceConfig, *, exporter: SpanExporter | None = None) -> bool:
    """Install the process's tracer provider as ``config`` says; True when spans are recorded.

    Once per process (the OpenTelemetry API allows one provider): once a provider is installed,
    later calls change nothing. With ``config.exporter == "none"`` and no ``exporter`` nothing is
    installed (a later call may still install one). A provider the host application installed before is used
    as it is (no exporter of ours is added; its exporter is its own).

    Args:
        config: the settings' trace configuration.
        exporter: replaces the exporter ``config`` names (tests: the SDK's in-memory exporter);
            it still goes through the masking exporter.

    Examples:
        >>> configure(TraceConfig())  # nothing to export: nothing installed
        False
    """
    global _CONFIG, _STATE
    with _LOCK:
        if _STATE is not None:
            return True
        _CONFIG = config
        if exporter is None and config.exporter == "none":
            return False
        from opentelemetry.sdk.trace import TracerProvider

        from adapters import _trace_export

        secrets = _trace_export.Secrets()
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            secrets.add(config.headers.values())
            _STATE = _State(config, secrets, current, adopted=True)
            logger.info("tracing: using the tracer provider this application installed")
            return True
        provider, masking = _trace_export.make_provider(config, secrets, exporter)
        trace.set_tracer_provider(provider)
        _STATE = _State(config, secrets, provider, masking)
    atexit.register(shutdown)
    return True


def active() -> bool:
    """Spans are recorded in this process (:func:`configure` installed or adopted a provider)."""
    return _STATE is not None


def config() -> TraceConfig | None:
    """The configuration :func:`configure` was given, or None before it was called."""
    return _CONFIG


def tracer() -> trace.Tracer:
    """The platform's tracer (a no-op one while nothing is configured)."""
    return trace.get_tracer(TRACER_NAME)


def register_secrets(values: Iterable[str]) -> None:
    """Mask ``values`` in every span exported from now on, in this process (no-op when off)."""
    state = _STATE
    if state is not None:
        state.secrets.add(values)


def masked(text: str) -> str:
    """``text`` with every registered secret value and URL credential masked (as spans are)."""
    state = _STATE
    return state.secrets.mask(text) if state is not None else text


def flush(timeout_s: float = 10.0) -> bool:
    """Export every finished span now; True when it completed in time (True when off)."""
    state = _STATE
    if state is None or state.closed:
        return True
    return bool(state.provider.force_flush(int(timeout_s * 1000)))


def shutdown() -> None:
    """Send the last spans, waiting at most the configured ``flush_timeout_s`` (at exit, once).

    An unreachable collector costs at most that long and one warning line; a provider the host
    application installed is left to it.
    """
    state = _STATE
    if state is None or state.closed or state.adopted:
        return
    state.closed = True
    from adapters._trace_export import bounded_shutdown

    bounded_shutdown(state.provider, state.masking, state.config.flush_timeout_s)


@contextlib.contextmanager
def continued() -> Iterator[None]:
    """Within the block, the configured ``TRACEPARENT`` (a traced CI job's) is the parent of
    the spans started without one: an entry point runs its flow inside it, so that the flow-run
    span continues that trace. Nothing happens when nothing is recorded or none is set."""
    parent = _CONFIG.parent if _CONFIG is not None and _STATE is not None else None
    if not parent:
        yield
        return
    token = otel_context.attach(_PROPAGATOR.extract({"traceparent": parent}))
    try:
        yield
    finally:
        otel_context.detach(token)


def current_trace_id() -> str | None:
    """The 32-hex trace id of the current span, or None (nothing recorded, no span)."""
    if _STATE is None:
        return None
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def trace_link(trace_id: str | None) -> str | None:
    """The backend's page of ``trace_id`` from the ``AIOP_TRACE_URL`` template, or None.

    Examples:
        >>> trace_link(None) is None
        True
    """
    template = _CONFIG.url_template if _CONFIG is not None else None
    if not trace_id or not template:
        return None
    return template.replace("{trace_id}", trace_id)


# -- what a step's process gets ------------------------------------------------------------------


class ProcessTrace(NamedTuple):
    """What a step's host process gets to join the trace: ``variables`` for its environment, and
    ``secrets`` among them (the exporter's headers) to mask in its output like a step secret."""

    variables: dict[str, str]
    secrets: list[str]


def process_environment() -> ProcessTrace:
    """``TRACEPARENT`` (and ``TRACESTATE``) of the current span, plus the traces-only exporter
    variables when spans go over OTLP; empty when nothing is recorded.

    Always the W3C trace context, whatever ``OTEL_PROPAGATORS`` says, upper-cased as the
    OpenTelemetry environment-carrier specification maps it; never ``BAGGAGE`` (application data,
    possibly sensitive).
    """
    state = _STATE
    if state is None:
        return ProcessTrace({}, [])
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    variables = {key.upper(): value for key, value in carrier.items()}
    variables.update(state.config.exporter_environment(f"{state.config.service_name}-step"))
    return ProcessTrace(variables, list(state.config.headers.values()))


# -- the Dagger room's part ----------------------------------------------------------------------

#: Inside :func:`engine_requests`: the span the requests stand for, and whether they are sampled.
_REQUESTS: contextvars.ContextVar[tuple[trace.Span, bool] | None] = contextvars.ContextVar(
    "aiop_engine_requests", default=None
)


@contextlib.contextmanager
def engine_requests(*, sampled: bool) -> Iterator[None]:
    """Within the block, Dagger requests carry the current span's context, sampled or not.

    Unsampled (``sampled=False``): a non-recording copy of the current span's context with the
    sampled flag off is made current, so the ``traceparent`` of each request names the same parent
    but tells the engine not to record (its tracer samples by the parent: nothing is recorded
    under an unsampled remote parent). The platform's own spans opened inside with
    :func:`model_call` still record. Nothing happens when nothing is recorded.
    """
    span = trace.get_current_span()
    context = span.get_span_context()
    if _STATE is None or not context.is_valid:
        yield
        return
    outer = _REQUESTS.get()
    if outer is not None and outer[0].get_span_context().span_id == context.span_id:
        span = outer[0]  # nested: the requests still stand for the same recording span
    token = _REQUESTS.set((span, sampled))
    try:
        with trace.use_span(_request_parent(context, sampled), end_on_exit=False):
            yield
    finally:
        _REQUESTS.reset(token)


def _request_parent(context: SpanContext, sampled: bool) -> trace.Span:
    flags = trace.TraceFlags(
        trace.TraceFlags.SAMPLED if sampled and context.trace_flags.sampled else 0
    )
    return NonRecordingSpan(
        SpanContext(
            context.trace_id,
            context.span_id,
            is_remote=False,
            trace_flags=flags,
            trace_state=context.trace_state,
        )
    )


#: Held while the process environment is set for a Dagger CLI being started.
_ENV_LOCK = threading.Lock()
_EXPORTER_PREFIX = "OTEL_EXPORTER_OTLP_"


@contextlib.asynccontextmanager
async def engine_cli_environment() -> AsyncIterator[None]:
    """While a Dagger CLI (``dagger session``) is started in the block, the process environment it
    inherits sends the engine's **spans only** where this process's go.

    The SDK starts the CLI with this process's environment (no ``env=``: dagger-io 0.21.11,
    ``provisioning/_session.py``), and the CLI exports traces, logs (every exec's output, every
    model message) and metrics to ``OTEL_EXPORTER_OTLP_ENDPOINT`` when that is set (dagger/otel-go
    ``init.go``). So, for the block, under a process-wide lock: every ``OTEL_EXPORTER_OTLP_*``
    variable is removed, and when the engine's spans are to be exported (OTLP, ``trace_engine``)
    the traces-only variables and ``TRACEPARENT`` of the current span (the flow run's, so the
    CLI's own spans join the run's trace) are set. Everything is restored afterwards. Nothing
    changes when :func:`configure` was never called (the process did not come through a platform
    entry point) or there is nothing to set or remove.
    """
    config = _CONFIG
    if config is None:
        yield
        return
    wanted: dict[str, str] = {}
    if _STATE is not None and config.engine:
        wanted = config.exporter_environment()
        if wanted:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            wanted.update({key.upper(): value for key, value in carrier.items()})
    if not wanted and not any(key.startswith(_EXPORTER_PREFIX) for key in os.environ):
        yield
        return
    # A thread lock (sessions open in any thread's event loop), polled: another CLI being started
    # in this process is rare, and a cancelled wait must not leave the lock taken.
    while not _ENV_LOCK.acquire(blocking=False):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    saved = {
        key: value
        for key, value in os.environ.items()
        if key.startswith(_EXPORTER_PREFIX) or key in wanted
    }
    try:
        for key in saved:
            del os.environ[key]
        os.environ.update(wanted)
        yield
    finally:
        for key in wanted:
            os.environ.pop(key, None)
        os.environ.update(saved)
        _ENV_LOCK.release()


# -- model calls (OpenTelemetry GenAI semantic conventions) --------------------------------------


class ModelCall:
    """The span of one model API call; a no-op when nothing is recorded."""

    def __init__(self, span: trace.Span, provider: str) -> None:
        self._span = span
        self._provider = provider

    def usage(
        self, *, input_tokens: int, output_tokens: int, cache_reads: int, cache_writes: int
    ) -> None:
        """This call's tokens, as the engine counts them for the provider.

        ``gen_ai.usage.input_tokens`` includes cached input (as the conventions ask): Anthropic's
        ``input_tokens`` leaves the cache reads and writes out (dagger/dagger v0.21.8,
        ``core/llm_anthropic.go``), OpenAI's and Gemini's prompt counts include them
        (``core/llm_openai.go``, ``core/llm_google.go``).
        """
        if not self._span.is_recording():
            return
        if self._provider == "anthropic":
            input_tokens += cache_reads + cache_writes
        self._span.set_attributes(
            {
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
                "gen_ai.usage.cache_read.input_tokens": cache_reads,
                "gen_ai.usage.cache_creation.input_tokens": cache_writes,
            }
        )

    def finish(self, reasons: list[str]) -> None:
        """``gen_ai.response.finish_reasons`` (the engine reports none: the caller derives them)."""
        if self._span.is_recording():
            self._span.set_attribute("gen_ai.response.finish_reasons", reasons)

    def error(self, exc: BaseException) -> None:
        """The call failed (or passed the budget): ``error.type`` and an error status."""
        if self._span.is_recording():
            self._span.set_attribute("error.type", type(exc).__name__)
            self._span.set_status(Status(StatusCode.ERROR, str(exc).splitlines()[0][:300]))


@contextlib.contextmanager
def model_call(provider: str, model: str | None, call: int) -> Iterator[ModelCall]:
    """The ``chat {model}`` span of the ``call``-th model API call (kind CLIENT).

    Opened under the span the enclosing :func:`engine_requests` stands for (so it records even
    where the requests are unsampled); the Dagger requests inside it carry it as their parent,
    sampled or not as that block says.
    """
    if _STATE is None:
        yield ModelCall(trace.INVALID_SPAN, provider)
        return
    outer = _REQUESTS.get()
    parent = outer[0] if outer is not None else trace.get_current_span()
    name = GENAI_PROVIDERS.get(provider, provider)
    span = tracer().start_span(
        f"chat {model}" if model else "chat",
        context=trace.set_span_in_context(parent),
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": name,
            **({"gen_ai.request.model": model} if model else {}),
            "aiop.llm.call": call,
        },
        record_exception=False,
    )
    with trace.use_span(span, end_on_exit=True, record_exception=False):
        if outer is not None:
            with engine_requests(sampled=outer[1]):
                yield ModelCall(span, provider)
        else:
            yield ModelCall(span, provider)


def content_messages(role: str, text: str) -> str:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages`` of one text message, as the GenAI
    conventions' JSON schema has them (only for an agent that opted in to content).

    Examples:
        >>> content_messages("user", "hi")
        '[{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]'
    """
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])
