"""The tracing module: nothing installed when nothing is set, masked export, the Dagger CLI's
environment, a bounded exit flush, and the GenAI names it writes.

A tracer provider can be installed once per process, and this test process has one (the
``spans`` fixture), so what depends on a process's own configuration runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters import tracing
from adapters._trace_export import Secrets, make_provider
from tests.conftest import ROOT
from tests.spans import SpanStore, span_id, text_of

PEM = (
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIBq8n3W6n8Xb0vW0W5rM9hI0kQyJdG8n0Vxkq3yq9nV2oAoGCCqGSM49\n"
    "AwEHoUQDQgAE3f1mYy1pQq7xW9m3rQ0cX5hVbq1m8Kx2fJ1oWc3Xb9Z7ZpW0qQ==\n"
    "-----END EC PRIVATE KEY-----"
)


def _python(
    program: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DAGGER_", "AIOP_TRACE"))
    }
    base.pop("TRACEPARENT", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(program)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_nothing_set_installs_nothing_and_imports_no_exporter() -> None:
    done = _python(
        """
        import json, sys
        from opentelemetry import trace
        from adapters import tracing
        from adapters.settings import load_settings
        installed = tracing.configure(load_settings().trace_config())
        from flows.runtime.trace_spans import step_span
        with step_span("x") as (span, owned):
            recording = span.recording
        print(json.dumps({
            "installed": installed,
            "active": tracing.active(),
            "provider": type(trace.get_tracer_provider()).__name__,
            "exporters": sorted(m for m in sys.modules if m.startswith("opentelemetry.exporter")),
            "sdk_trace": "opentelemetry.sdk.trace" in sys.modules,
            "process_environment": tracing.process_environment().variables,
            "recording": recording,
        }))
        """,
        {},
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {
        "installed": False,
        "active": False,
        "provider": "ProxyTracerProvider",
        "exporters": [],
        "sdk_trace": False,
        "process_environment": {},
        "recording": False,
    }


def test_every_string_a_span_carries_is_masked_on_its_way_out() -> None:
    """Attributes, events, status message and resource: a registered multi-line secret (each line
    of it) and URL credentials are masked before any exporter sees the span."""
    exporter = InMemorySpanExporter()
    secrets = Secrets()
    config = tracing.TraceConfig(
        resource={
            "deployment.note": f"key {PEM.splitlines()[1]}",
            "repo": "https://u:pw@git.example/r",
        },
        headers={"authorization": "Bearer header-token-123"},
    )
    provider, masking = make_provider(config, secrets, exporter)
    secrets.add([PEM])
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("leaky") as span:
        span.set_attribute("command", f"curl https://me:hunter2@api.example/?token=abc -d '{PEM}'")
        span.set_attribute("lines", [PEM.splitlines()[2], "plain"])
        span.add_event("exception", {"exception.message": f"bad key\n{PEM}"})
        span.set_attribute("auth", "Bearer header-token-123")
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"failed: {PEM.splitlines()[1]}"))
    provider.force_flush()
    [done] = exporter.get_finished_spans()
    text = text_of([done])
    for line in PEM.splitlines():
        assert line not in text
    for secret in ("hunter2", "token=abc", "header-token-123", ":pw@"):
        assert secret not in text
    assert done.attributes["lines"] == ("***", "plain")
    assert "me:***@api.example" in done.attributes["command"]
    assert masking.sent == 1
    provider.shutdown()


def test_the_step_process_context_is_w3c_whatever_the_global_propagator(spans: SpanStore) -> None:
    with tracing.tracer().start_as_current_span("attempt 1") as span:
        variables = tracing.process_environment().variables
    assert set(variables) == {"TRACEPARENT"}  # no BAGGAGE, and no exporter: spans go nowhere here
    assert variables["TRACEPARENT"].split("-")[2] == span_id(span)


def test_engine_requests_carry_the_same_parent_unsampled(spans: SpanStore) -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    header: dict[str, str] = {}
    inner: dict[str, str] = {}
    with (
        tracing.tracer().start_as_current_span("invoke_agent a") as agent,
        tracing.engine_requests(sampled=False),
    ):
        propagator.inject(header)
        with tracing.model_call("google", "gemini-2.5-flash", 1) as call:
            propagator.inject(inner)
            call.usage(input_tokens=10, output_tokens=2, cache_reads=4, cache_writes=0)
    _, _trace_id, parent, flags = header["traceparent"].split("-")
    assert parent == span_id(agent) and int(flags, 16) & 1 == 0
    chat = spans.tree().one("chat gemini-2.5-flash")
    assert inner["traceparent"].split("-")[2] == span_id(chat)
    assert int(inner["traceparent"].split("-")[3], 16) & 1 == 0
    assert chat.parent.span_id == agent.get_span_context().span_id  # recorded all the same
    assert chat.attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 10  # Gemini's count includes the cache


def test_the_genai_names_are_the_conventions() -> None:
    """The GenAI conventions are 'Development': pin the strings the platform writes to the
    installed semantic-conventions package, so a rename there fails here."""
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as genai
    from opentelemetry.semconv._incubating.attributes import process_attributes
    from opentelemetry.semconv.attributes import error_attributes

    written = {
        "gen_ai.operation.name": genai.GEN_AI_OPERATION_NAME,
        "gen_ai.provider.name": genai.GEN_AI_PROVIDER_NAME,
        "gen_ai.request.model": genai.GEN_AI_REQUEST_MODEL,
        "gen_ai.response.model": genai.GEN_AI_RESPONSE_MODEL,
        "gen_ai.response.finish_reasons": genai.GEN_AI_RESPONSE_FINISH_REASONS,
        "gen_ai.usage.input_tokens": genai.GEN_AI_USAGE_INPUT_TOKENS,
        "gen_ai.usage.output_tokens": genai.GEN_AI_USAGE_OUTPUT_TOKENS,
        "gen_ai.usage.cache_read.input_tokens": genai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
        "gen_ai.usage.cache_creation.input_tokens": genai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        "gen_ai.agent.name": genai.GEN_AI_AGENT_NAME,
        "gen_ai.input.messages": genai.GEN_AI_INPUT_MESSAGES,
        "gen_ai.output.messages": genai.GEN_AI_OUTPUT_MESSAGES,
        "error.type": error_attributes.ERROR_TYPE,
        "process.exit.code": process_attributes.PROCESS_EXIT_CODE,
    }
    assert all(ours == theirs for ours, theirs in written.items()), written
    values = genai.GenAiProviderNameValues
    assert {
        "anthropic": values.ANTHROPIC.value,
        "openai": values.OPENAI.value,
        "google": values.GCP_GEMINI.value,
    } == tracing.GENAI_PROVIDERS
    operations = genai.GenAiOperationNameValues
    assert {operations.CHAT.value, operations.INVOKE_AGENT.value} == {"chat", "invoke_agent"}


_DUMPING_CLI = f"""#!{sys.executable}
import json, os, sys
keys = [k for k in os.environ if k.startswith("OTEL_") or k in ("TRACEPARENT", "TRACESTATE")]
json.dump({{k: os.environ[k] for k in keys}}, open(os.environ["FAKE_CLI_ENV"], "w"))
print(json.dumps({{"port": int(os.environ["FAKE_CLI_PORT"]),
                  "session_token": os.environ["FAKE_CLI_TOKEN"]}}), flush=True)
sys.stdin.read()
"""

_CLI_RUN = """
import asyncio, json, os, sys
from adapters import StepSpec, tracing
from adapters.dagger.runner import DaggerRunner
from adapters.settings import load_settings
from tests.fakes.dagger_engine import FakeDaggerEngine

tracing.configure(load_settings().trace_config())
before = {k: v for k, v in os.environ.items() if k.startswith(("OTEL_", "TRACEPARENT"))}

async def main():
    with FakeDaggerEngine() as engine:
        os.environ["FAKE_CLI_PORT"], os.environ["FAKE_CLI_TOKEN"] = str(engine.port), engine.token
        with tracing.tracer().start_as_current_span("flow") as span:
            flow = format(span.get_span_context().span_id, "016x")
            runner = DaggerRunner(provision_timeout_s=10)
            async with runner.session():
                await runner.run(StepSpec(name="s", image="alpine", args=["true"]))
        return flow

flow = asyncio.run(main())
after = {k: v for k, v in os.environ.items() if k.startswith(("OTEL_", "TRACEPARENT"))}
print(json.dumps({"flow": flow, "restored": before == after,
                  "cli": json.load(open(os.environ["FAKE_CLI_ENV"]))}))
"""


@pytest.mark.parametrize("engine_export", [True, False], ids=["engine-spans", "engine-off"])
def test_the_dagger_cli_gets_a_traces_only_environment_with_the_flow_as_parent(
    tmp_path: Path, engine_export: bool
) -> None:
    """The CLI exports traces, logs (every exec's output, model messages) and metrics to the
    generic endpoint when it sees one (dagger/otel-go): it is started with traces only."""
    cli = tmp_path / "fake-dagger"
    cli.write_text(_DUMPING_CLI, encoding="utf-8")
    cli.chmod(0o755)
    env = {
        "_EXPERIMENTAL_DAGGER_CLI_BIN": str(cli),
        "FAKE_CLI_ENV": str(tmp_path / "cli-env.json"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20t0ken",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://127.0.0.1:9/v1/logs",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
        "AIOP_TRACE_FLUSH_TIMEOUT_S": "1",
        "AIOP_TRACE_ENGINE": "1" if engine_export else "0",
    }
    done = _python(_CLI_RUN, env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["restored"] is True
    cli_env = report["cli"]
    if not engine_export:
        assert not any(k.startswith("OTEL_EXPORTER_OTLP_") for k in cli_env), cli_env
        return
    assert cli_env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:9/v1/traces"
    assert cli_env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
    assert cli_env["OTEL_EXPORTER_OTLP_HEADERS"] == "authorization=Bearer%20t0ken"
    for gone in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"):  # fmt: skip
        assert gone not in cli_env
    assert cli_env["TRACEPARENT"].split("-")[2] == report["flow"]


def test_an_unreachable_collector_costs_one_warning_line_and_a_bounded_exit() -> None:
    started = time.monotonic()
    done = _python(
        """
        from adapters import tracing
        from adapters.settings import load_settings
        tracing.configure(load_settings().trace_config())
        with tracing.tracer().start_as_current_span("lost"):
            pass
        print("done")
        """,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:pw@127.0.0.1:9",
            "AIOP_TRACE_FLUSH_TIMEOUT_S": "2",
        },
        timeout=120,  # a hang guard, not a measurement
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1, done.stderr
    assert "tracing:" in warnings[0] and "127.0.0.1:9" in warnings[0]
    assert "pw" not in done.stderr.replace("pw@", "") and "user:***@" in warnings[0]
    assert elapsed < 60, f"the exit took {elapsed:.0f} s"


def _settings_error(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _python(
        "import sys; from flows.cli.run import main; sys.exit(main(['--rows', '10']))",
        env,
    )


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"OTEL_RESOURCE_ATTRIBUTES": "team=data,oops"}, "OTEL_RESOURCE_ATTRIBUTES"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/json is not supported"),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
            "otlp-grpc",
        ),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "Bearer-s3cr3t-value"}, "OTEL_EXPORTER_OTLP_HEADERS"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "is not an http:// or https:// URL"),
    ],
    ids=["resource", "http-json", "grpc-missing", "headers", "endpoint"],
)
def test_a_bad_tracing_variable_stops_the_pipeline_before_work_in_one_paragraph(
    env: dict[str, str], words: str, tmp_path: Path
) -> None:
    done = _python(
        f"import os, sys; os.chdir({str(tmp_path)!r}); from flows.cli.run import main;"
        " sys.exit(main(['--rows', '10']))",
        env,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and words in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "s3cr3t" not in done.stderr
    assert not (tmp_path / "output").exists()


def test_a_traceparent_in_the_environment_becomes_the_runs_parent(spans: SpanStore) -> None:
    """run_root under a CI job's TRACEPARENT when Prefect's flow span does not record."""
    from adapters.settings import Settings
    from flows.runtime.trace_spans import run_root

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with run_root("a-flow", Settings(traceparent=parent)) as trace_id:
        pass
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"
    root = spans.tree().one("flow a-flow")
    assert f"{root.parent.span_id:016x}" == "b7ad6b7169203331"


def test_a_local_step_gets_its_attempts_context_and_where_spans_go_with_the_headers_masked() -> (
    None
):
    """Parity with a Dagger container (the engine gives every exec ``TRACEPARENT`` and an OTLP
    endpoint): a step program that emits spans joins the run's trace; the exporter's headers are
    masked in the step's output like a secret."""
    done = _python(
        """
        import asyncio, json
        from adapters import StepSpec, tracing
        from adapters.local_runner import LocalRunner
        from adapters.settings import load_settings
        tracing.configure(load_settings().trace_config())
        program = (
            "import json, os; print(json.dumps({k: v for k, v in os.environ.items()"
            " if k.startswith(('OTEL_', 'TRACEPARENT'))}))"
        )
        spec = StepSpec(name="emits", image="python:3.12-slim", args=["python", "-c", program])
        with tracing.tracer().start_as_current_span("attempt 1") as span:
            result = asyncio.run(LocalRunner().run(spec))
        print(json.dumps({"span": format(span.get_span_context().span_id, "016x"),
                          "stdout": result.stdout}))
        """,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=hdr-s3cr3t-value",
            "AIOP_TRACE_FLUSH_TIMEOUT_S": "1",
        },
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    seen = json.loads(report["stdout"])
    assert seen["TRACEPARENT"].split("-")[2] == report["span"]
    assert seen["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:9/v1/traces"
    assert seen["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
    assert seen["OTEL_SERVICE_NAME"] == "aiop-step"
    assert seen["OTEL_EXPORTER_OTLP_HEADERS"] == "x-api-key=***"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in seen  # traces only: no logs or metrics
    assert "hdr-s3cr3t-value" not in done.stdout
