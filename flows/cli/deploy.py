"""``aiop deploy``: the server-side objects of the scale-out topology, idempotently
(:mod:`flows.ops.deploy`).

Examples:
    $ aiop deploy --concurrency 8
"""

from __future__ import annotations

import sys

import click

from flows.cli._preamble import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail, load_settings_or_exit
from flows.ops.deploy import DEFAULT_CONCURRENCY, DEFAULT_LIMIT_NAME, DEFAULT_POOL

__all__ = ["deploy"]


@click.command(
    "deploy", short_help="Create the work pool, engine limit and deployment for scale-out."
)
@click.option(
    "--pool", metavar="NAME", default=DEFAULT_POOL, help=f"work pool name (default {DEFAULT_POOL})"
)
@click.option(
    "--concurrency",
    metavar="N",
    type=click.IntRange(min=1),
    default=DEFAULT_CONCURRENCY,
    help=f"steps running on the engine at once, over all workers (default {DEFAULT_CONCURRENCY})",
)
@click.option(
    "--limit-name",
    metavar="NAME",
    default=DEFAULT_LIMIT_NAME,
    help=f"global concurrency limit name (default {DEFAULT_LIMIT_NAME})",
)
def deploy(pool: str, concurrency: int, limit_name: str) -> int:
    """Create the process work pool, the engine concurrency limit and the data-pipeline
    deployment on the Prefect server (PREFECT_API_URL, else the local server of this
    PREFECT_HOME); safe to run again.

    Exits 0 on success, 1 when an object is in the way, 2 without a Prefect server.
    """
    settings = load_settings_or_exit()
    from adapters.redaction import redact_url, redact_urls
    from flows.ops.deploy import DeployError
    from flows.ops.deploy import deploy as deploy_objects
    from flows.ui.console import quiet_prefect_defaults

    chosen = quiet_prefect_defaults(settings)
    missing = chosen.missing("deploying")
    if missing:
        fail(
            f"{missing} Workers on other machines need a server they can reach: see"
            " docs/guides/scale-out.md.",
            EXIT_USAGE,
        )
    api = chosen.url or ""
    print(f"deploying on {chosen.describe()}", file=sys.stderr)
    try:
        results = deploy_objects(pool=pool, concurrency=concurrency, limit_name=limit_name)
    except DeployError as exc:
        fail(redact_urls(str(exc), api), EXIT_FAILED)
    except Exception as exc:  # the server refused or was unreachable: one line, no credentials
        fail(
            f"deploying on the Prefect server {redact_url(api)} failed"
            f" ({type(exc).__name__}: {redact_urls(str(exc), api)}); check that it runs and that"
            " PREFECT_API_URL is right, then run this again.",
            EXIT_FAILED,
        )
    for result in results:
        print(result.line())
    print(f"next: start workers with `prefect worker start --pool {pool}` on each machine")
    return EXIT_OK
