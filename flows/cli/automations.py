"""``aiop automations install``: let Prefect react when a circuit breaker opens
(:mod:`flows.ops.automations`).

Examples:
    $ aiop automations install
"""

from __future__ import annotations

import click

from flows.cli._preamble import EXIT_OK, EXIT_USAGE, fail, load_settings_or_exit

__all__ = ["automations"]


@click.group("automations")
def automations() -> None:
    """Create Prefect automations that react to circuit-breaker events."""


@automations.command("install")
@click.option("--notify-block", metavar="NAME", help="notification block to send through")
def install(notify_block: str | None) -> int:
    """Create or update the automations (idempotent)."""
    settings = load_settings_or_exit()
    from flows.ui.console import quiet_prefect_defaults

    missing = quiet_prefect_defaults(settings).missing("automations")
    if missing:
        fail(missing, EXIT_USAGE)
    from flows.ops.automations import install as install_automations
    from flows.ui.console import run_flow_quietly

    for result in run_flow_quietly(lambda: install_automations(notify_block)):
        detail = f" ({result.detail})" if result.detail else ""
        print(f"{result.action:<8} {result.name}{detail}")
    return EXIT_OK
