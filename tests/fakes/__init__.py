"""Test doubles that fake the outside world at its network boundary (never the code under test)."""

from tests.fakes.dagger_engine import (
    DIE,
    DROP,
    EXEC,
    HANG,
    Call,
    ExecOutcome,
    ExecRequest,
    FakeDaggerEngine,
    MountedPath,
    ReceivedQuery,
)
from tests.fakes.host_exec import HostExec, exec_standin_engine

__all__ = [
    "DIE",
    "DROP",
    "EXEC",
    "HANG",
    "Call",
    "ExecOutcome",
    "ExecRequest",
    "FakeDaggerEngine",
    "HostExec",
    "MountedPath",
    "ReceivedQuery",
    "exec_standin_engine",
]
