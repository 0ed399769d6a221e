"""Fixtures of the flows tests that run agents: the agents tests' fake clock and breakers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.breaker import reset_breakers
from tests.agents.conftest import Breakers, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breakers(clock: FakeClock) -> Breakers:
    return Breakers(clock)


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    """The process-wide breakers (engine:local, agent:...) start closed in every test."""
    reset_breakers()
    yield
    reset_breakers()
