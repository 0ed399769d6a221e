"""The real command exports its run's trace over OTLP/HTTP: a loopback receiver decodes the
protobuf with ``opentelemetry-proto``, so the wire format is checked, not assumed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.benchmarks._otlp import OtlpReceiver

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

#: A secret in the exporter's headers (an HTTP header value is one line).
TOKEN = "tok-0123456789abcdef-second-part-of-the-token"


def test_python_m_flows_data_pipeline_sends_one_trace_over_otlp_http(
    prefect_api_url: str, tmp_path: Path
) -> None:
    with OtlpReceiver() as receiver:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "PREFECT_API_URL": prefect_api_url,
            "AIOP_BACKEND": "local",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{TOKEN}",
            "OTEL_SERVICE_NAME": "aiop-test",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=ci,openinference.project.name=aiop",
            "AIOP_TRACE_URL": "http://127.0.0.1:6006/redirects/traces/{trace_id}",
        }
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "flows.data_pipeline",
                "--rows",
                "500",
                "--partitions",
                "1",
                "--output",
                str(tmp_path / "o"),
                "--work-dir",
                str(tmp_path / "w"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        received = list(receiver.received)
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    assert received, f"nothing was exported: {console[-3000:]}"
    for export in received:
        assert export.path == "/v1/traces"
        assert export.headers["content-type"] == "application/x-protobuf"
        assert export.headers["authorization"] == f"Bearer {TOKEN}"
    spans = [(resource, span) for export in received for resource, span in export.spans()]
    resources = {tuple(sorted(r.items())) for r, _ in spans}
    assert len(resources) == 1
    resource = dict(next(iter(resources)))
    assert resource["service.name"] == "aiop-test"
    assert resource["deployment.environment.name"] == "ci"
    assert {span.trace_id.hex() for _, span in spans} == {
        (tmp_path / "o" / "summary.json").read_text().split('"trace_id": "')[1][:32]
    }
    names = {span.name for _, span in spans}
    assert {
        "step ingest",
        "step validate",
        "step transform-0",
        "step aggregate",
        "step report",
    } <= names
    assert "attempt 1" in names
    by_id = {span.span_id: span for _, span in spans}
    for _, span in spans:
        if span.name.startswith("attempt"):
            task = by_id[span.parent_span_id]
            assert by_id[task.parent_span_id].name.startswith("step ")
    roots = [span for _, span in spans if not span.parent_span_id]
    assert len(roots) == 1 and {a.key for a in roots[0].attributes} >= {"aiop.flow.name"}
    raw = b"".join(export.body for export in received)
    assert TOKEN.encode() not in raw
    # the run says where its trace went, and the summary links it
    trace_id = roots[0].trace_id.hex()
    assert (
        f"http://127.0.0.1:6006/redirects/traces/{trace_id}"
        in (tmp_path / "o" / "summary.json").read_text()
    )
    said = [line for line in console.splitlines() if "tracing:" in line]
    assert (
        len(said) == 1 and f"trace {trace_id}, spans go to {receiver.endpoint}/v1/traces" in said[0]
    )
    assert "not sent" not in console  # nothing was lost
