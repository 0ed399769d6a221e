"""``aiop drill``: prove the self-healing promises against the real pipeline
(:mod:`flows.ops.drill`).

Examples:
    $ aiop drill --output output/drill
"""

from __future__ import annotations

from pathlib import Path

import click

from flows.cli._preamble import EXIT_FAILED, EXIT_OK, load_settings_or_exit
from flows.ops.drill import SCENARIOS

__all__ = ["drill"]

_SCENARIOS = [s.name for s in SCENARIOS] + ["resume after SIGKILL"]


@click.command("drill")
@click.option(
    "--output",
    metavar="DIR",
    default="output/drill",
    help="folder for runs and the report (default output/drill)",
)
@click.option(
    "--backend",
    type=click.Choice(["local", "dagger"]),
    default="local",
    help="where the steps run (default local)",
)
@click.option(
    "--rows", metavar="N", type=int, default=2000, help="rows of each pipeline run (default 2000)"
)
@click.option(
    "--scenario",
    multiple=True,
    metavar="NAME",
    type=click.Choice(_SCENARIOS),
    help=f"run only this scenario (repeatable; default all): {', '.join(repr(s) for s in _SCENARIOS)}",
)
@click.option("--docs-page", metavar="PATH", help="also write the report to this docs page")
def drill(
    output: str, backend: str, rows: int, scenario: tuple[str, ...], docs_page: str | None
) -> int:
    """Inject one fault per error class into the real pipeline and check it heals."""
    settings = load_settings_or_exit()
    from flows.ops.drill import flow_run_lines, render_report, run_drill
    from flows.ui.console import quiet_prefect_defaults, run_flow_quietly

    api = quiet_prefect_defaults(settings)
    results, flow_run_id = run_flow_quietly(
        lambda: run_drill(output, backend, rows, list(scenario), settings),
        debug=settings.debug,
    )
    report = render_report(results, backend)
    if docs_page:
        Path(docs_page).write_text(report, encoding="utf-8")
    print()
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.scenario:<24} {r.observed}")
    print(f"\nReport:     {Path(output) / 'self-healing-report.md'}")
    for line in flow_run_lines(flow_run_id, api.ui_url):
        print(line)
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED
