"""Test doubles that fake the outside world at its network boundary (never the code under test)."""

from tests.fakes.dagger_engine import (
    DIE,
    HANG,
    Call,
    ExecOutcome,
    ExecRequest,
    FakeDaggerEngine,
    MountedPath,
    ReceivedQuery,
)

__all__ = [
    "DIE",
    "HANG",
    "Call",
    "ExecOutcome",
    "ExecRequest",
    "FakeDaggerEngine",
    "MountedPath",
    "ReceivedQuery",
]
