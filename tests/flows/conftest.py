"""Fixtures of the flows tests that run agents: the agents tests' fake clock and breakers."""

from tests.agents.conftest import _fresh_breakers, breakers, clock

__all__ = ["_fresh_breakers", "breakers", "clock"]
