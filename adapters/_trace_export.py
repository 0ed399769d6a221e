"""Where spans go: the SDK provider, the masking exporter and a bounded flush at exit.

Imported only by :func:`adapters.tracing.configure` when spans are to be recorded: with nothing
configured neither the OpenTelemetry SDK nor an exporter is imported (importing the OTLP exporter
alone costs tens of milliseconds).

* :class:`MaskingExporter` wraps the real exporter. On the batch processor's thread, it rebuilds
  every finished span with each string of its name, attributes, event attributes, status and
  resource run through :mod:`adapters.redaction` (the secret values registered with
  :func:`adapters.tracing.register_secrets`, multi-line ones line by line, and credentials in
  URLs), so nothing a span carries (Prefect's ``exception`` events and state messages included)
  reaches a backend with a secret in it.
* The OTLP exporter's own log lines (one per failed batch, each retry) are kept, not printed: the
  first failure is one warning naming the redacted endpoint and the reason; at exit one line says
  how many spans were not sent.
* :func:`bounded_shutdown` flushes and shuts the provider down in a daemon thread and waits at most
  ``flush_timeout_s``: an unreachable collector never holds the process past that (the SDK's own
  exit hook, which would wait for the exporter's whole retry timeout, is not registered).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from adapters.redaction import SecretMasker, redact_url, redact_urls

if TYPE_CHECKING:
    from adapters.tracing import TraceConfig

__all__ = ["MaskingExporter", "Secrets", "bounded_shutdown", "make_provider"]

logger = logging.getLogger("aiop.tracing")

#: The exporter's own words around the reason (opentelemetry-exporter-otlp-proto-http 1.45).
_RETRYING = re.compile(r",? ?encountered while exporting spans? batch(, retrying in [\d.]+s)?\.?$")
#: The loggers of the OTLP exporters, whose per-batch failure lines are kept, not printed.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.exporter.otlp.proto.grpc",
    "opentelemetry.exporter.otlp.proto.common",
)


class Secrets:
    """The process's secret values, for masking spans: one masker, rebuilt when a value is added."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._masker = SecretMasker(())
        self._lock = threading.Lock()
        #: Grows with every change of the values (what was masked before may need it again).
        self.version = 0

    def add(self, values: Iterable[str]) -> None:
        """Mask ``values`` (empty ones ignored) in every span exported from now on."""
        new = {v for v in values if v} - self._values
        if new:
            with self._lock:
                self._values |= new
                self._masker = SecretMasker(self._values)
                self.version += 1

    def mask(self, text: str) -> str:
        """``text`` with every registered value and every URL credential masked."""
        return redact_urls(self._masker.mask(text))


def _mask_value(value: Any, secrets: Secrets) -> Any:
    if isinstance(value, str):
        return secrets.mask(value)
    if isinstance(value, tuple | list):
        return tuple(secrets.mask(v) if isinstance(v, str) else v for v in value)
    return value


def _mask_attributes(
    attributes: Mapping[str, Any] | None, secrets: Secrets
) -> dict[str, Any] | None:
    if attributes is None:
        return None
    return {key: _mask_value(value, secrets) for key, value in attributes.items()}


class _FailureLog(logging.Handler):
    """Keeps the OTLP exporter's last log line (the reason of a failed export) instead of
    printing it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            text = " ".join(record.getMessage().split())
            self.last = _RETRYING.sub("", text).removeprefix("Transient error ")


class MaskingExporter(SpanExporter):
    """Exports through ``inner`` with every secret masked (see the module docstring).

    Args:
        inner: the exporter that sends (OTLP, console, or a test's in-memory one).
        secrets: the values to mask.
        endpoint: where ``inner`` sends, named (redacted) when spans cannot be sent.
    """

    def __init__(self, inner: SpanExporter, secrets: Secrets, endpoint: str | None = None) -> None:
        self.inner = inner
        self.secrets = secrets
        self.endpoint = redact_url(endpoint) if endpoint else None
        self.failed = 0
        self.sent = 0
        #: ``failed`` when the last warning was given (None: none given yet).
        self.reported: int | None = None
        self._masked_resource: tuple[tuple[int, int], Resource] | None = None
        self._log = _FailureLog()
        for name in _EXPORTER_LOGGERS:
            exporter_logger = logging.getLogger(name)
            exporter_logger.addHandler(self._log)
            exporter_logger.propagate = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        masked = [self._masked(span) for span in spans]
        try:
            result = self.inner.export(masked)
        except Exception as exc:  # an exporter must not break the batch thread
            self._log.last = f"{type(exc).__name__}: {exc}"
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.sent += len(spans)
        else:
            self.failed += len(spans)
            if self.reported is None:
                self.report()
        return result

    def report(self, *, cut_after_s: float | None = None) -> None:
        """Say in one warning line what was not sent, where and why (``cut_after_s``: the exit
        flush gave up after that many seconds with spans still on their way)."""
        self.reported = self.failed
        reason = self.secrets.mask(self._log.last) if self._log.last else "no answer"
        where = f" to {self.endpoint}" if self.endpoint else ""
        if cut_after_s is not None:
            what = f"the last spans were not sent{where} within {cut_after_s:g} s at exit"
        else:
            what = f"{self.failed} span(s) could not be sent{where}"
        logger.warning(
            "tracing: %s (%s); the run is not affected. Check that the collector runs and that"
            " OTEL_EXPORTER_OTLP_ENDPOINT points at it",
            what,
            reason,
        )

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def _resource(self, resource: Resource) -> Resource:
        """``resource`` masked with the current secrets (kept until they change)."""
        key = (id(resource), self.secrets.version)
        if self._masked_resource is None or self._masked_resource[0] != key:
            masked = Resource(
                {k: _mask_value(v, self.secrets) for k, v in resource.attributes.items()},
                resource.schema_url,
            )
            self._masked_resource = (key, masked)
        return self._masked_resource[1]

    def _masked(self, span: ReadableSpan) -> ReadableSpan:
        secrets = self.secrets
        status = span.status
        if status.description:
            status = Status(status.status_code, secrets.mask(status.description))
        return ReadableSpan(
            name=secrets.mask(span.name),
            context=span.context,
            parent=span.parent,
            resource=self._resource(span.resource),
            attributes=_mask_attributes(span.attributes, secrets),
            events=[
                Event(e.name, _mask_attributes(e.attributes, secrets), e.timestamp)
                for e in span.events
            ],
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )


def _resource(config: TraceConfig, secrets: Secrets) -> Resource:
    """The process's resource, built from the settings alone (``Resource.create`` would read
    ``OTEL_RESOURCE_ATTRIBUTES`` from the environment a second time); masked on export."""
    attributes: dict[str, Any] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": version("opentelemetry-sdk"),
        **config.resource,
        "service.name": config.service_name,
    }
    return Resource(attributes)


def _exporter(config: TraceConfig) -> SpanExporter:
    if config.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        grpc: SpanExporter = GrpcExporter(
            endpoint=config.traces_url,
            headers=dict(config.headers) or None,
            timeout=config.timeout_s,
        )
        return grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=config.traces_url,
        headers=dict(config.headers) or None,
        timeout=config.timeout_s,
    )


def make_provider(
    config: TraceConfig, secrets: Secrets, exporter: SpanExporter | None
) -> tuple[TracerProvider, MaskingExporter]:
    """A provider whose batch processor exports through a :class:`MaskingExporter` around
    ``exporter`` (default: the one ``config`` names)."""
    secrets.add(config.headers.values())
    masking = MaskingExporter(
        exporter or _exporter(config), secrets, None if exporter else config.traces_url
    )
    provider = TracerProvider(resource=_resource(config, secrets), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(masking))
    return provider, masking


def bounded_shutdown(
    provider: TracerProvider, masking: MaskingExporter | None, timeout_s: float
) -> None:
    """Flush and shut ``provider`` down, waiting at most ``timeout_s``; say once what was lost."""
    done = threading.Event()

    def close() -> None:
        try:
            provider.force_flush(int(timeout_s * 1000))
            provider.shutdown()
        finally:
            done.set()

    threading.Thread(target=close, name="aiop-trace-flush", daemon=True).start()
    finished = done.wait(timeout_s)
    if masking is None:
        return
    if not finished:
        masking.report(cut_after_s=timeout_s)
    elif masking.reported is not None and masking.failed > masking.reported:
        masking.report()
