"""Breaker transitions as Prefect events: visible in the event feed and usable by automations.

Each :class:`~adapters.breakers.breaker.BreakerEvent` becomes a Prefect event of the same name
(``aiop.breaker.opened`` / ``half-opened`` / ``closed``) on the resource ``aiop.breaker.<name>``, with
the counts and the last error (masked by the runner that produced it) in the payload, and the
current flow and task runs as related resources when there are any.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from typing import Any

from adapters.breakers.breaker import Breaker, BreakerEvent

__all__ = [
    "RECENT_TRANSITIONS",
    "attach_event_emitter",
    "emit_breaker_event",
]

_log = logging.getLogger("aiop.breaker")

#: The last transitions seen in this process, newest last (read by the drill and the artifacts).
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
        _log.debug("could not emit %s: %s", event.name, exc)


def attach_event_emitter(breaker: Breaker) -> Breaker:
    """Make ``breaker`` emit Prefect events on every transition (idempotent)."""
    breaker.add_listener(emit_breaker_event)
    return breaker
