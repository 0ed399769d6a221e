"""What the runtime tells Prefect's event feed: which agent ran a step, and breaker transitions.

**Agent steps.** Each step an agent runs ends with one event ``aiop.agent.step.<state>``
(``completed``, ``cached``, ``failed``, ``crashed``...) on the resource ``aiop.agent.<name>``, related
to the step's task run (when one was created) and carrying the step, its state, attempts, wall time
and own run time, and the error class when it failed. The Prefect UI's event feed filters by
resource, so ``aiop.agent.transform-duckdb`` lists what that agent did; the task run's name says the
same (``transform-0 [transform-duckdb]``).

**Breakers.** Each :class:`~adapters.breakers.breaker.BreakerEvent` becomes a Prefect event of the
same name (``aiop.breaker.opened`` / ``half-opened`` / ``closed``) on the resource
``aiop.breaker.<name>``, with the counts and the last error (masked by the runner that produced it)
in the payload, and the current flow and task runs as related resources when there are any;
automations react to them (:mod:`flows.ops.automations`).

Events cost no server round trip on the step's path: Prefect sends them from a background worker.
A lost event never fails a step.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters.breakers.breaker import Breaker, BreakerEvent

if TYPE_CHECKING:
    from flows.runtime.outcome import StepOutcome

__all__ = [
    "RECENT_TRANSITIONS",
    "agent_resource_id",
    "attach_event_emitter",
    "emit_breaker_event",
    "emit_step_event",
]

_log = logging.getLogger("aiop.agents")

#: The last breaker transitions seen in this process, newest last (read by the drill).
RECENT_TRANSITIONS: deque[BreakerEvent] = deque(maxlen=1000)


def emit_breaker_event(event: BreakerEvent) -> None:
    """Emit ``event`` to Prefect; never raises (a lost event must not fail a step)."""
    RECENT_TRANSITIONS.append(event)
    try:
        from prefect.events import emit_event

        payload: dict[str, Any] = {
            k: v for k, v in dataclasses.asdict(event).items() if k not in ("name", "resource_id")
        }
        emit_event(
            event=event.name,
            resource={
                "prefect.resource.id": event.resource_id,
                "prefect.resource.name": event.breaker,
                "prefect.resource.role": "circuit-breaker",
            },
            payload=payload,
        )
    except Exception as exc:  # events are best effort; the transition is logged anyway
        logging.getLogger("aiop.breaker").debug("could not emit %s: %s", event.name, exc)


def attach_event_emitter(breaker: Breaker) -> Breaker:
    """Make ``breaker`` emit Prefect events on every transition (idempotent)."""
    breaker.add_listener(emit_breaker_event)
    return breaker


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
