"""``aiop``: the platform's one command, with a subcommand per job and ``--help`` on each.

One module per subcommand group; every command loads the settings and reports bad usage through
the one preamble (:mod:`flows.cli._preamble`): one paragraph on stderr and exit 2, never a
traceback. Exit codes: 0 done, 1 the work failed (said in one paragraph), 2 bad usage, an unusable
setting or input, 130 interrupted. ``python -m flows.data_pipeline`` is ``aiop run`` under the
name the design gives it.

Examples:
    $ aiop --help
    $ aiop run --rows 10000 --output output/demo
    $ aiop agents list
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from flows.cli._preamble import CONTEXT_SETTINGS, invoke
from flows.cli.agents import agents
from flows.cli.automations import automations
from flows.cli.bench import bench
from flows.cli.deploy import deploy
from flows.cli.drill import drill
from flows.cli.history import history
from flows.cli.reference import cli_reference, errors, settings
from flows.cli.run import command as run
from flows.cli.serve import serve
from flows.cli.server import server
from flows.cli.verify import verify

__all__ = ["aiop", "main"]


@click.group(
    "aiop",
    context_settings=CONTEXT_SETTINGS,
)
def aiop() -> None:
    """The AI Orchestration Platform: run the data pipeline and agents on Prefect, and operate
    the platform around them."""


for _command in (
    run,
    agents,
    verify,
    drill,
    history,
    server,
    serve,
    deploy,
    automations,
    bench,
    settings,
    errors,
    cli_reference,
):
    aiop.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``aiop`` console script; returns the exit code."""
    return invoke(aiop, argv, "aiop")
