"""How a step is executed: the step contract, the runners and the error tree.

Examples:
    >>> import asyncio
    >>> from adapters import StepSpec, get_runner
    >>> spec = StepSpec(name="hello", image="python:3.12-slim", args=["python", "-c", "print(1)"])
    >>> asyncio.run(get_runner("local").run(spec)).exit_code
    0
"""

from adapters.contract import MASK, Mount, StepResult, StepSpec, mask_secrets
from adapters.errors import (
    AiopError,
    CircuitOpenError,
    EngineConnectionError,
    EngineUnavailableError,
    InfrastructureError,
    InvalidInputError,
    InvalidSpecError,
    ProvisioningTimeoutError,
    StepFailedError,
    StepTimeoutError,
)
from adapters.retry_policy import DEFAULT_RETRY_POLICY, RetryPolicy
from adapters.runner import LineSink, Runner
from adapters.selection import BackendChoice, EngineProbe, choose_backend, get_runner, probe_engine

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "MASK",
    "AiopError",
    "BackendChoice",
    "CircuitOpenError",
    "EngineConnectionError",
    "EngineProbe",
    "EngineUnavailableError",
    "InfrastructureError",
    "InvalidInputError",
    "InvalidSpecError",
    "LineSink",
    "Mount",
    "ProvisioningTimeoutError",
    "RetryPolicy",
    "Runner",
    "StepFailedError",
    "StepResult",
    "StepSpec",
    "StepTimeoutError",
    "choose_backend",
    "get_runner",
    "mask_secrets",
    "probe_engine",
]
