"""``agent-run``: the Prefect flow behind ``python -m agents run`` -- one agent, one flow run.

Examples:
    >>> import asyncio
    >>> from agents.run_flow import agent_run
    >>> asyncio.run(agent_run("validate-duckdb", {"input": "/in.csv", "output": "/out"},
    ...                       backend="local"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from adapters import choose_backend
from agents.manager import AgentManager

__all__ = ["FLOW_NAME", "agent_run"]

FLOW_NAME = "agent-run"


@flow(name=FLOW_NAME, flow_run_name="{target}", log_prints=False)
async def agent_run(
    target: str,
    params: dict[str, str] | None = None,
    backend: str | None = None,
    mounts: dict[str, str] | None = None,
    outputs: dict[str, str] | None = None,
    paths: list[str] | None = None,
) -> dict[str, Any]:
    """Run one agent (by name, or the healthiest for a capability) and return what it did.

    Args:
        target: an agent name or a capability.
        params: the agent's parameters.
        backend: ``auto``, ``dagger`` or ``local`` (default ``AIOP_BACKEND``, else ``auto``).
        mounts: host path -> container path, read-only.
        outputs: container path -> host path, exported after the step exits 0.
        paths: definition folders or files (default: shipped + ``AIOP_AGENTS_PATH``).

    Returns:
        ``agent``, ``step``, ``state``, ``attempts``, ``exit_code``, ``duration_s``, ``backend``,
        ``stdout``, ``stderr`` (tails, secrets masked) and ``outputs``.

    Raises:
        AiopError: the step failed, or no agent could run (the flow run ends Failed).
    """
    manager = AgentManager.from_paths(paths)
    if any(a.kind == "container" for a in manager.candidates(target, params)):
        get_run_logger().info(choose_backend(backend).reason)  # llm agents say it when refused
    outcome = await manager.run(target, params, backend, mounts=mounts, outputs=outputs)
    if outcome.error is not None:
        raise outcome.error
    assert outcome.result is not None
    runs = manager.recent_runs()
    result = outcome.result
    return {
        "agent": runs[-1].agent if runs else target,
        "step": outcome.name,
        "state": outcome.state,
        "attempts": outcome.attempts,
        "exit_code": result.exit_code,
        "duration_s": result.duration_s,
        "backend": result.backend,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "outputs": result.outputs,
    }
