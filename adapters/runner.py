"""What every runner is: an object with ``async run(spec) -> StepResult``.

Runners never raise for a non-zero exit (that is a :class:`~adapters.contract.StepResult`); they raise
only errors from :mod:`adapters.errors`, translated at their boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

from adapters.contract import Backend, StepResult, StepSpec

__all__ = ["LineSink", "Runner", "Stream"]

Stream = Literal["stdout", "stderr", "engine"]

#: Called once per output line as it arrives, with secret values already masked.
LineSink = Callable[[Stream, str], None]


@runtime_checkable
class Runner(Protocol):
    """The contract every runner fulfils.

    Examples:
        >>> import asyncio
        >>> from adapters import StepSpec, get_runner
        >>> runner = get_runner("local")
        >>> result = asyncio.run(runner.run(StepSpec(name="hi", image="python:3.12-slim",
        ...                                        args=["python", "-c", "print('hi')"])))
        >>> result.exit_code, result.stdout
        (0, 'hi\\n')
    """

    backend: Backend

    async def run(
        self, spec: StepSpec, *, attempt: int = 1, on_line: LineSink | None = None
    ) -> StepResult:
        """Run ``spec`` once and return its result; non-zero exits are results, not errors."""
        ...
