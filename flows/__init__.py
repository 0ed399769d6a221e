"""Prefect flows and the task that runs one step.

``run_step`` is imported on first use, so that ``python -m flows.steps`` (the step code that runs
inside containers, where Prefect is not installed) never imports Prefect. ``quiet_prefect_defaults``
and ``run_flow_quietly`` give a script the CLI's clean console (no telemetry races, no shutdown
noise, one link to the run).

Examples:
    >>> from flows import run_step  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.runtime.agent_run import run_agent
    from flows.runtime.step_task import StepOutcome, execute_step, run_step
    from flows.ui.console import quiet_prefect_defaults, run_flow_quietly

__all__ = [
    "StepOutcome",
    "execute_step",
    "quiet_prefect_defaults",
    "run_agent",
    "run_flow_quietly",
    "run_step",
]


def __getattr__(name: str) -> Any:
    if name in ("quiet_prefect_defaults", "run_flow_quietly"):
        from flows.ui import console

        return getattr(console, name)
    if name == "run_agent":
        from flows.runtime import agent_run

        return agent_run.run_agent
    if name in __all__:
        from flows.runtime import step_task

        return getattr(step_task, name)
    raise AttributeError(f"module 'flows' has no attribute {name!r}")
