"""Which agent ran a step, as a Prefect event: visible in the event feed, usable by automations.

Each step an agent runs ends with one event ``aiop.agent.step.<state>`` (``completed``,
``cached``, ``failed``, ``crashed``...) on the resource ``aiop.agent.<name>``, related to the step's
task run (when one was created) and carrying the step, its state, attempts, wall time and own run
time, and the error class when it failed. The Prefect UI's event feed filters by resource, so
``aiop.agent.transform-duckdb`` lists what that agent did; the task run's name says the same
(``transform-0 [transform-duckdb]``). Events cost no server round trip on the step's path: Prefect
sends them from a background worker.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from flows.runtime.outcome import StepOutcome

__all__ = ["agent_resource_id", "emit_step_event"]

_log = logging.getLogger("aiop.agents")


def agent_resource_id(agent: str) -> str:
    """The Prefect resource id of ``agent``: ``aiop.agent.<name>``.

    Examples:
        >>> agent_resource_id("validate-duckdb")
        'aiop.agent.validate-duckdb'
    """
    return f"aiop.agent.{agent}"


def emit_step_event(
    agent: str,
    outcome: StepOutcome,
    task_run_id: UUID | None = None,
    task_run_name: str | None = None,
) -> None:
    """Emit ``aiop.agent.step.<state>`` for ``outcome``; never raises (events are best effort)."""
    try:
        from prefect.events import emit_event

        related: list[dict[str, str]] = []
        if task_run_id is not None:
            related.append(
                {
                    "prefect.resource.id": f"prefect.task-run.{task_run_id}",
                    "prefect.resource.role": "task-run",
                    "prefect.resource.name": task_run_name or outcome.name,
                }
            )
        payload: dict[str, Any] = {
            "step": outcome.name,
            "state": outcome.state,
            "attempts": outcome.attempts,
            "duration_s": round(outcome.duration_s, 3),
            "run_s": None if outcome.run_s is None else round(outcome.run_s, 3),
        }
        if outcome.error is not None:
            payload["error"] = type(outcome.error).__name__
        emit_event(
            event=f"aiop.agent.step.{outcome.state.lower()}",
            resource={
                "prefect.resource.id": agent_resource_id(agent),
                "prefect.resource.name": agent,
                "prefect.resource.role": "agent",
            },
            related=related,
            payload=payload,
        )
    except Exception as exc:  # a lost event must never fail a step
        _log.debug("could not emit the step event of %s: %s", agent, exc)
