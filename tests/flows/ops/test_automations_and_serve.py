"""Deployments with docs links, and automations that react to breaker events, on a real Prefect server."""

from __future__ import annotations

import asyncio
import time

import pytest
from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.events import emit_event

from flows.ops.automations import PAUSE_NAME, install
from flows.ops.serve import deployment_description, deployments

pytestmark = pytest.mark.prefect


def test_description_has_parameters_and_docs_links(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flows.ui.console._docs_base", "http://docs.test")  # use_docs_url, undone
    (deployment,) = deployments()
    text = deployment.description
    from flows.data_pipeline.flow import data_pipeline

    assert text == deployment_description("data-pipeline", data_pipeline.__doc__)
    assert "- `input`:" in text and "- `partitions`:" in text
    assert "(http://docs.test/guides/data-pipeline/)" in text
    assert "(http://docs.test/troubleshooting/)" in text
    assert "(http://docs.test/?q=data+pipeline)" in text


async def test_install_is_idempotent_and_pauses_the_deployment_when_a_breaker_opens(
    prefect_api_url: str,
) -> None:
    (deployment,) = deployments()
    deployment_id = await deployment.aapply()
    first = {r.name: r.action for r in await install()}
    second = {r.name: r.action for r in await install()}
    assert first[PAUSE_NAME] == "created" and second[PAUSE_NAME] == "updated"
    automation = await Automation.aread(name=PAUSE_NAME)
    assert automation.trigger.expect == {"aiop.breaker.opened"}  # type: ignore[union-attr]

    await asyncio.sleep(1.0)  # let the triggers service load the automation
    emit_event(
        event="aiop.breaker.opened",
        resource={
            "prefect.resource.id": "aiop.breaker.engine:test",
            "prefect.resource.name": "engine:test",
        },
        payload={"fail_counter": 5, "last_error": "EngineUnavailableError: test"},
    )
    deadline = time.monotonic() + 30
    paused = False
    async with get_client() as client:
        while time.monotonic() < deadline and not paused:
            await asyncio.sleep(0.5)
            paused = (await client.read_deployment(deployment_id)).paused
    assert paused, "the automation did not pause the deployment within 30 s"
