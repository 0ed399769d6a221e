"""Test-wide set-up: an isolated Prefect home, and a Prefect server for the tests that ask for one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.spans import SpanStore

# Before anything imports Prefect: keep test runs out of the user's ~/.prefect and quiet.
_HOME = Path(tempfile.mkdtemp(prefix="aiop-test-prefect-"))
os.environ["PREFECT_HOME"] = str(_HOME)
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_HOME / "storage")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("AIOP_CACHE_DIR", str(_HOME / "caches"))
os.environ.setdefault("AIOP_INSTALLATION_KEY_FILE", str(_HOME / "installation.key"))
os.environ.pop("PREFECT_API_URL", None)
# Commands run without PREFECT_API_URL use Prefect's temporary server, never the local background
# server the main job keeps between runs (flows.server.local_server): a test run leaves nothing running.
os.environ["AIOP_PREFECT_SERVER"] = "embedded"
os.environ.pop("AIOP_BACKEND", None)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prefect_api_url() -> Iterator[str]:
    """A Prefect server (Prefect's own test harness, ~10 s once per session); yields its API URL.

    The URL is also set in ``os.environ`` so that subprocesses (the CLI) use the same server.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:
            os.environ.pop("PREFECT_API_URL", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's Prefect home goes with the session (nothing of the user's is in it)."""
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def _span_store() -> Iterator[Any]:
    """The process's tracer provider, installed once (the OpenTelemetry API allows one), exporting
    through the platform's masking exporter into the SDK's own in-memory exporter.

    From the first test that asks for it on, the rest of the session runs traced: what users with
    tracing on get, for every later test.
    """
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from adapters import tracing

    if tracing.active():
        pytest.fail("a tracer provider was installed before the test fixture's", pytrace=False)
    exporter = InMemorySpanExporter()
    config = tracing.TraceConfig(
        url_template="http://traces.example/trace/{trace_id}", flush_timeout_s=5.0
    )
    assert tracing.configure(config, exporter=exporter)
    yield exporter


@pytest.fixture
def spans(_span_store: Any) -> Iterator[SpanStore]:
    """The spans finished during the test (the store emptied before it starts)."""
    from adapters import tracing

    tracing.flush()
    _span_store.clear()
    yield SpanStore(_span_store)
    tracing.flush()
    _span_store.clear()
