"""Whether an agent can run here, checked before anything runs: its secrets, and for an ``llm``
agent a Dagger engine and its provider key where the engine reads it (ADR 0021).

Examples:
    >>> import asyncio
    >>> from agents.loader import SHIPPED_DEFINITIONS, load_file
    >>> agent = load_file(SHIPPED_DEFINITIONS / "summarize-llm.yaml")
    >>> _, reasons = asyncio.run(check_ready(agent, "local", environ={}, secret_blocks=None))
    >>> reasons[0].startswith("llm agents run only on a Dagger engine")
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from adapters.selection import EngineProbe, probe_engine
from agents.llm_agent import provider_key
from agents.secret_values import BlockLoader, resolve_secrets
from agents.spec import AgentSpec

__all__ = ["check_ready", "key_only_in_block"]


def key_only_in_block(key: str) -> str:
    """Why an llm agent whose provider key is only in a Prefect Secret block cannot run."""
    return (
        f"the provider key {key} was found only in a Prefect Secret block, and the Dagger engine"
        " reads provider keys from the environment of the process that starts its session;"
        f" export {key}=... before the run (its value may be a secret reference the engine"
        " resolves, such as op://..., vault://... or file://...)"
    )


async def check_ready(
    agent: AgentSpec,
    backend: str | None,
    *,
    environ: Mapping[str, str] | None = None,
    secret_blocks: BlockLoader | None,
    engine_probe: Callable[[], EngineProbe] = probe_engine,
) -> tuple[dict[str, str], list[str]]:
    """Resolve ``agent``'s secret values and say why it cannot run (nothing when it can).

    Args:
        agent: the agent.
        backend: the backend asked for (None: auto).
        environ: where secret values are read (``os.environ`` if None).
        secret_blocks: loads Prefect Secret blocks (None: never tried).
        engine_probe: looks for a Dagger engine (only asked for llm agents).

    Returns:
        The secret values found, and one sentence with the fix per reason it cannot run.
    """
    env = os.environ if environ is None else environ
    values, reasons = await resolve_secrets(agent.secrets, environ=env, load_block=secret_blocks)
    if agent.kind != "llm":
        return values, reasons
    chosen = (backend or "auto").strip().lower()
    if chosen == "local":
        reasons.insert(
            0,
            "llm agents run only on a Dagger engine (dag.llm()) and the backend is 'local';"
            " use --backend dagger or auto",
        )
    else:
        probe = engine_probe()
        if not probe.reachable:
            reasons.insert(
                0,
                f"llm agents need a Dagger engine and none is reachable ({probe.detail}); start"
                " Docker or set _EXPERIMENTAL_DAGGER_RUNNER_HOST to a remote engine",
            )
    key = provider_key(agent)
    if key in values and not env.get(key):
        reasons.append(key_only_in_block(key))
    return values, reasons
