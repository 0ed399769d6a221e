"""``aiop serve``: serve the platform's flows as deployments, with docs in the UI
(:mod:`flows.ops.serve`).

Examples:
    $ aiop serve
"""

from __future__ import annotations

import sys

import click

from flows.cli._preamble import EXIT_OK, EXIT_USAGE, fail, load_settings_or_exit

__all__ = ["serve"]


@click.command("serve")
def serve() -> int:
    """Serve the platform's flows as deployments on the Prefect server (until Ctrl-C)."""
    settings = load_settings_or_exit()
    from flows.ops.serve import deployments
    from flows.ui.console import quiet_prefect_defaults

    api = quiet_prefect_defaults(settings)  # and the deployments' descriptions link to its docs
    missing = api.missing("serving deployments")
    if missing:
        fail(missing, EXIT_USAGE)
    print(f"serving the platform's deployments on {api.describe()}", file=sys.stderr)
    from prefect import serve as prefect_serve

    prefect_serve(*deployments())
    return EXIT_OK
