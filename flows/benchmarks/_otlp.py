"""A loopback OTLP/HTTP receiver that decodes what it gets, as a collector would.

It accepts ``POST /v1/traces`` with an ``application/x-protobuf`` body (gzip-encoded or not),
decodes it with ``opentelemetry-proto`` into an ``ExportTraceServiceRequest`` and answers an
empty ``ExportTraceServiceResponse``, so an exporter's whole path (encoding, compression, HTTP)
is exercised for real. Used by the tracing benchmark and by the tests of the wire format.

Example:
    >>> with OtlpReceiver() as receiver:
    ...     receiver.endpoint.startswith("http://127.0.0.1:")
    True
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

__all__ = ["OtlpReceiver", "Received"]


@dataclass(frozen=True)
class Received:
    """One export as it arrived: path, headers, the raw body and the decoded request."""

    path: str
    headers: dict[str, str]
    body: bytes
    request: Any  # ExportTraceServiceRequest

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """Each span with its resource's attributes (string values)."""
        found = []
        for resource_spans in self.request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                found += [(resource, span) for span in scope_spans.spans]
        return found


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: OtlpReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.receiver._add(
            Received(self.path, {k.lower(): v for k, v in self.headers.items()}, raw, request)
        )
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@dataclass
class OtlpReceiver:
    """``with OtlpReceiver() as r:`` listens on a free loopback port; ``r.received`` grows."""

    received: list[Received] = field(default_factory=list)
    _server: _Server | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> OtlpReceiver:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.receiver = self
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def endpoint(self) -> str:
        """The base URL to give ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _add(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def span_count(self) -> int:
        """Spans received so far."""
        with self._lock:
            return sum(len(r.spans()) for r in self.received)
