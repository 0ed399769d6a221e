"""The Dagger SDK's own telemetry set-up never runs in the platform's process.

``dagger.Connection.__aenter__`` calls ``dagger.telemetry.initialize()`` (dagger-io 0.21.11,
``provisioning/_connection.py``), which, once any ``OTEL_*`` variable is set, writes six ``OTEL_*``
defaults into ``os.environ``, adds an exporter per ``OTEL_TRACES_EXPORTER`` entry to the global
tracer provider (a second export of every span when it is the platform's provider) and instruments
logging; with ``OTEL_TRACES_EXPORTER=otlp`` and no protocol it raised a raw ``RuntimeError`` from
every Dagger step. The configurators are once-per-process singletons, so each case runs in a fresh
interpreter: in this test process an earlier test may already have run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

_PROGRAM = textwrap.dedent(
    """
    import asyncio, json, logging, os, sys
    sys.path.insert(0, {root!r})
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from adapters import StepSpec
    from adapters.dagger.runner import DaggerRunner
    from tests.fakes.dagger_engine import FakeDaggerEngine

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    trace.set_tracer_provider(provider)
    before_env = sorted(k for k in os.environ if k.startswith("OTEL_"))
    before_handlers = list(logging.getLogger().handlers)
    before_factory = logging.getLogRecordFactory()

    async def main():
        with FakeDaggerEngine() as engine:
            os.environ.update(engine.session_env())
            spec = StepSpec(name="hello", image="alpine", args=["echo", "hi"])
            try:
                result = await DaggerRunner(provision_timeout_s=10).run(spec)
                return {{"ok": result.exit_code == 0}}
            except BaseException as exc:
                return {{"ok": False, "raised": f"{{type(exc).__module__}}.{{type(exc).__name__}}: {{exc}}"}}

    report = asyncio.run(main())
    report["new_env"] = sorted(
        k for k in os.environ if k.startswith("OTEL_") and k not in before_env
    )
    report["new_handlers"] = [
        type(h).__name__ for h in logging.getLogger().handlers if h not in before_handlers
    ]
    report["record_factory_replaced"] = logging.getLogRecordFactory() is not before_factory
    report["processors"] = len(provider._active_span_processor._span_processors)
    print(json.dumps(report))
    """
)


def _run(extra_env: dict[str, str]) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DAGGER_"))}
    env.update(extra_env)
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM.format(root=str(ROOT))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize(
    "otel_env",
    [
        # The defect: no protocol means gRPC to the SDK's set-up, whose exporter is not installed.
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        # With a protocol it ran, and added a second exporter to the platform's provider.
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        },
        # An endpoint alone: six variables written into the environment, logging instrumented.
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
    ],
    ids=["traces-exporter-otlp", "otlp-http-protobuf", "endpoint-only"],
)
def test_a_container_step_runs_and_the_sdk_configures_nothing_when_otel_variables_are_set(
    otel_env: dict[str, str],
) -> None:
    report = _run(otel_env)
    assert report.get("raised") is None and report["ok"] is True, report
    assert report["new_env"] == [], "the SDK wrote OTEL_* defaults into the environment"
    assert report["new_handlers"] == [], "the SDK added root log handlers"
    assert report["record_factory_replaced"] is False, "the SDK instrumented logging"
    assert report["processors"] == 1, "the SDK added an exporter to the platform's provider"


def test_the_sdk_configurators_the_platform_marks_done_still_exist() -> None:
    """The guard against an SDK upgrade: the two private singletons the Dagger room marks as
    configured must still be there, with the attribute the SDK checks."""
    import dagger.telemetry as sdk_telemetry

    for name in ("_DaggerOtelConfigurator", "_DaggerPropagationConfigurator"):
        configurator = getattr(sdk_telemetry, name)
        assert configurator() is configurator(), f"{name} is no longer a singleton"
        assert hasattr(configurator(), "_is_configured"), f"{name} has no _is_configured"
