"""Whether an agent can run here, checked before anything runs: its secrets, and for an ``llm``
agent a Dagger engine and its provider key where the engine reads it (ADR 0021).

The provider key of an llm agent is looked for where the engine's router reads it
(:class:`adapters.llm_route.EngineConfig`): a ``.env`` file in the working directory, then the
environment; a secret reference in it must resolve (``env://``, ``file://``). With no
``llm.model``, the model the engine would pick by default must be one the declared key serves.

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
from pathlib import Path

from adapters.llm_route import EngineConfig
from adapters.selection import EngineProbe, probe_engine
from agents.llm_agent import provider_key
from agents.secret_values import BlockLoader, block_name, resolve_secrets
from agents.spec import AgentSpec

__all__ = ["check_ready", "key_not_set", "key_only_in_block"]


def key_only_in_block(key: str) -> str:
    """Why an llm agent whose provider key is only in a Prefect Secret block cannot run."""
    return (
        f"the provider key {key} was found only in a Prefect Secret block, and the Dagger engine"
        " reads provider keys from the environment of the process that starts its session (or a"
        f" .env file in its working directory); export {key}=... before the run (its value may be"
        " a secret reference the engine resolves, such as op://..., vault://... or file://...)"
    )


def key_not_set(key: str, config: EngineConfig) -> str:
    """Why an llm agent whose provider key is nowhere the engine reads it cannot run."""
    return (
        f"the provider key {key} is not set where the Dagger engine reads it (a .env file in"
        f" {config.cwd}, then the environment of the process that starts the engine session);"
        f" export {key}=... before the run or put it in that .env (its value may be a secret"
        " reference the engine resolves, such as op://..., env://... or file://...)"
    )


async def check_ready(
    agent: AgentSpec,
    backend: str | None,
    *,
    environ: Mapping[str, str] | None = None,
    secret_blocks: BlockLoader | None,
    engine_probe: Callable[[], EngineProbe] = probe_engine,
    cwd: Path | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Resolve ``agent``'s secret values and say why it cannot run (nothing when it can).

    Args:
        agent: the agent.
        backend: the backend asked for (None: auto).
        environ: where secret values are read (``os.environ`` if None).
        secret_blocks: loads Prefect Secret blocks (None: never tried).
        engine_probe: looks for a Dagger engine (only asked for llm agents).
        cwd: where the engine's session process reads ``.env`` (default: this process's
            working directory).

    Returns:
        The secret values found, and one sentence with the fix per reason it cannot run.
    """
    env = os.environ if environ is None else environ
    key = provider_key(agent) if agent.kind == "llm" else None
    names = [n for n in agent.secrets if n != key]  # the provider key: where the engine reads it
    values, reasons = await resolve_secrets(names, environ=env, load_block=secret_blocks)
    if agent.kind != "llm" or key is None or agent.llm is None:
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
    config = EngineConfig(cwd=cwd or Path.cwd(), environ=env)
    found = config.key(key)
    if found.found_in is None:
        in_block = False
        if secret_blocks is not None:
            try:
                in_block = bool(await secret_blocks(block_name(key)))
            except Exception:  # the lookup failed: the key is missing either way
                in_block = False
        reasons.append(key_only_in_block(key) if in_block else key_not_set(key, config))
    elif found.problem:
        reasons.append(f"the provider key cannot be read: {found.problem}")
    if agent.llm.model is None:
        route = config.route(None)
        if route is not None and route.key_name != key:
            reasons.append(
                f"llm.model is not set, so the engine picks its default model {route.model!r},"
                f" which uses {route.key_name}, not the declared {key}; set llm.model to a"
                f" model of the provider whose key is {key}"
            )
    return values, reasons
