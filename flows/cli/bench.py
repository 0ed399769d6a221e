"""``aiop bench``: run the benchmarks (:mod:`flows.benchmarks`, in a checkout only: they are not in
the wheel).

Examples:
    $ aiop bench --quick --json output/bench.json
"""

from __future__ import annotations

import importlib.util

import click

from flows.cli._preamble import EXIT_USAGE, fail

__all__ = ["bench"]


@click.command(
    "bench",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
    short_help="Run the benchmarks (from a checkout).",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> int:
    """Measure the platform's performance claims as ratios within one run (a checkout only;
    `aiop bench --help` lists its options)."""
    if importlib.util.find_spec("flows.benchmarks") is None:
        fail(
            "the benchmarks are not installed: they ship with the source checkout only (run"
            " `aiop bench` from a checkout installed with `pip install -e .`)",
            EXIT_USAGE,
        )
    from flows.benchmarks.cli import main

    return main(list(args))
