"""Where an agent's secret values come from: the environment, else a Prefect Secret block.

A definition lists secret *names* (``secrets: [ANTHROPIC_API_KEY]``). At run time each value is
``os.environ[NAME]`` when set and not empty; otherwise, when a Prefect API is configured, the Prefect
Secret block named after it in lower-kebab case (``anthropic-api-key``). A secret found in neither is
reported before anything runs; values only ever travel in ``StepSpec.secrets`` (masked everywhere).

Examples:
    >>> import asyncio
    >>> asyncio.run(resolve_secrets(["TOKEN"], environ={"TOKEN": "t0k"}, load_block=None))
    ({'TOKEN': 't0k'}, [])
    >>> block_name("ANTHROPIC_API_KEY")
    'anthropic-api-key'
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

__all__ = [
    "BlockLoader",
    "block_name",
    "load_prefect_secret",
    "prefect_api_configured",
    "resolve_secrets",
]

#: Loads the Secret block of that name: its value, or None when there is none; raising means the
#: lookup itself failed (its message is shown).
BlockLoader = Callable[[str], Awaitable[str | None]]


def block_name(name: str) -> str:
    """The Prefect Secret block name for secret ``name``: lower-case, ``_`` as ``-``."""
    return name.lower().replace("_", "-")


def prefect_api_configured() -> bool:
    """True when a Prefect API URL is configured (environment or profile); imports Prefect."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


async def load_prefect_secret(name: str) -> str | None:
    """The value of the Prefect Secret block ``name``, or None when there is no such block.

    Raises:
        Exception: the Prefect API could not be asked (its own error, shown to the user).
    """
    from prefect.blocks.system import Secret

    try:
        block = cast("Secret[Any]", await Secret.aload(name))
    except ValueError:  # Prefect's "Unable to find block document named ..."
        return None
    return str(block.get())


async def resolve_secrets(
    names: Iterable[str],
    *,
    environ: Mapping[str, str] | None = None,
    load_block: BlockLoader | None,
) -> tuple[dict[str, str], list[str]]:
    """Resolve each secret name to its value.

    Args:
        names: the secret names the agent declares.
        environ: where to look first (``os.environ`` if None).
        load_block: how to load a Prefect Secret block (e.g. :func:`load_prefect_secret` when
            :func:`prefect_api_configured`); None never tries one.

    Returns:
        The values found, and one sentence (with the fix) per secret that was not.
    """
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        value = env.get(name) or None
        why = "no Prefect Secret block was tried (no Prefect API is configured)"
        if value is None and load_block is not None:
            try:
                value = await load_block(block_name(name))
                why = f"there is no Prefect Secret block {block_name(name)!r}"
            except Exception as exc:  # the lookup failed: say so, the run is refused anyway
                why = f"the Prefect Secret block {block_name(name)!r} could not be read ({exc})"
        if value:
            values[name] = value
        else:
            missing.append(
                f"secret {name} is not set and {why}; export {name}=... or save a Prefect Secret"
                f" block named {block_name(name)!r}"
            )
    return values, missing
