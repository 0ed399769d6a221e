"""``aiop automations install``: let Prefect react when a circuit breaker opens.

Creates (or updates, so running it twice changes nothing) these automations on the Prefect server:

* ``aiop: pause data-pipeline when a breaker opens`` — on any ``aiop.breaker.opened`` event, pause
  the ``data-pipeline`` deployment so schedules stop feeding a broken engine (resume it in the UI or
  with ``prefect deployment resume``);
* ``aiop: notify when a breaker opens`` — with ``--notify-block NAME``, send a notification through
  that notification block (Slack, e-mail, ... created in the UI under Blocks).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from uuid import UUID

__all__ = ["NOTIFY_NAME", "PAUSE_NAME", "InstallResult", "install"]

PAUSE_NAME = "aiop: pause data-pipeline when a breaker opens"
NOTIFY_NAME = "aiop: notify when a breaker opens"
DEPLOYMENT = "data-pipeline/data-pipeline"


@dataclass(frozen=True)
class InstallResult:
    """What :func:`install` did with one automation."""

    name: str
    action: str  # created, updated, skipped
    detail: str = ""


def _trigger() -> object:
    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(
        expect={"aiop.breaker.opened"},
        match={"prefect.resource.id": "aiop.breaker.*"},
        posture=Posture.Reactive,
        threshold=1,
    )


async def _upsert(name: str, description: str, actions: list[object]) -> str:
    from prefect.automations import Automation
    from prefect.exceptions import ObjectNotFound

    automation = Automation(
        name=name,
        description=description,
        trigger=_trigger(),  # type: ignore[arg-type]
        actions=actions,  # type: ignore[arg-type]
    )
    try:
        existing = await Automation.aread(name=name)
    except (ObjectNotFound, ValueError):
        await automation.acreate()
        return "created"
    automation.id = existing.id
    await automation.aupdate()
    return "updated"


async def install(notify_block: str | None = None) -> list[InstallResult]:
    """Create or update the automations; returns what happened to each."""
    from prefect.client.orchestration import get_client
    from prefect.events.actions import PauseDeployment, SendNotification
    from prefect.exceptions import ObjectNotFound

    results: list[InstallResult] = []
    async with get_client() as client:
        deployment_id: UUID | None
        try:
            deployment_id = (await client.read_deployment_by_name(DEPLOYMENT)).id
        except ObjectNotFound:
            deployment_id = None
        block_id: UUID | None = None
        if notify_block:
            try:
                block_id = next(
                    (b.id for b in await client.read_block_documents() if b.name == notify_block),
                    None,
                )
            except ObjectNotFound:
                block_id = None
    if deployment_id is None:
        results.append(
            InstallResult(
                PAUSE_NAME,
                "skipped",
                f"deployment {DEPLOYMENT!r} not found: run `aiop serve` first",
            )
        )
    else:
        action = await _upsert(
            PAUSE_NAME,
            "Pause the data pipeline while a circuit breaker is open.",
            [PauseDeployment(source="selected", deployment_id=deployment_id)],
        )
        results.append(InstallResult(PAUSE_NAME, action))
    if not notify_block:
        results.append(
            InstallResult(NOTIFY_NAME, "skipped", "pass --notify-block NAME to send notifications")
        )
    elif block_id is None:
        results.append(
            InstallResult(NOTIFY_NAME, "skipped", f"no block named {notify_block!r} on the server")
        )
    else:
        action = await _upsert(
            NOTIFY_NAME,
            "Notify when a circuit breaker opens.",
            [
                SendNotification(
                    block_document_id=block_id,
                    subject="Circuit breaker {{ event.resource['prefect.resource.name'] }} opened",
                    body="{{ event.payload.last_error }}",
                )
            ],
        )
        results.append(InstallResult(NOTIFY_NAME, action))
    return results


if __name__ == "__main__":
    print("python -m flows.ops.automations is now `aiop automations install`", file=sys.stderr)
    sys.exit(2)
