"""The stand-in engine found by the SDK as an existing session: one helper for every test that needs it.

The SDK picks an engine from the environment (``DAGGER_SESSION_PORT``/``DAGGER_SESSION_TOKEN`` for an
existing session, the ``_EXPERIMENTAL_DAGGER_*`` variables for a CLI or runner); a test clears all of
them, points the session variables at the stand-in, and fails afterwards if the stand-in saw a query the
real engine would reject.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from adapters import StepSpec
from adapters.dagger.runner import DaggerRunner
from tests.fakes.dagger_engine import FakeDaggerEngine

__all__ = ["ENGINE_ENV", "short_runner", "standin_session", "step_spec"]

#: Every environment variable through which the SDK finds an engine.
ENGINE_ENV = (
    "DAGGER_SESSION_PORT",
    "DAGGER_SESSION_TOKEN",
    "_EXPERIMENTAL_DAGGER_CLI_BIN",
    "_EXPERIMENTAL_DAGGER_RUNNER_HOST",
)


@contextmanager
def standin_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaggerEngine]:
    """A running stand-in engine that the SDK finds as the existing session, checked on the way out."""
    for name in ENGINE_ENV:
        monkeypatch.delenv(name, raising=False)
    with FakeDaggerEngine() as fake:
        for name, value in fake.session_env().items():
            monkeypatch.setenv(name, value)
        yield fake
    assert not fake.rejected, f"the real engine would reject: {[q.errors for q in fake.rejected]}"


def short_runner() -> DaggerRunner:
    """A DaggerRunner with short limits: the stand-in answers at once, so a hang fails fast."""
    return DaggerRunner(provision_timeout_s=5.0, close_timeout_s=5.0)


def step_spec(**overrides: Any) -> StepSpec:
    """A small valid step (``step-1`` printing ``hi``) with ``overrides`` applied."""
    fields: dict[str, Any] = {
        "name": "step-1",
        "image": "python:3.12-slim",
        "args": ["python", "-c", "print('hi')"],
        "timeout_s": 10,
    }
    fields.update(overrides)
    return StepSpec.model_validate(fields)
