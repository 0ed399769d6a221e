"""``aiop history``: the last runs of a flow from the Prefect API (:mod:`flows.ui.history`).

Examples:
    $ aiop history --last 5
"""

from __future__ import annotations

import click

from flows.cli._preamble import EXIT_OK, load_settings_or_exit
from flows.ui.history import DEFAULT_FLOW

__all__ = ["history"]


@click.command("history")
@click.option(
    "--flow", metavar="NAME", default=DEFAULT_FLOW, help=f"flow name (default {DEFAULT_FLOW})"
)
@click.option(
    "--last", metavar="N", type=click.IntRange(min=1), default=10, help="how many runs (default 10)"
)
def history(flow: str, last: int) -> int:
    """Show the last runs of a flow from the Prefect API."""
    settings = load_settings_or_exit()
    from flows.ui.console import quiet_prefect_defaults, run_flow_quietly
    from flows.ui.history import read_listing, render_history

    quiet_prefect_defaults(settings)
    records = run_flow_quietly(lambda: read_listing(flow, last), debug=settings.debug)
    print(render_history(records, markdown=False))
    return EXIT_OK
