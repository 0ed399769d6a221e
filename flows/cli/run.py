"""``aiop run`` (also ``python -m flows.data_pipeline``): the main job.

Checks its arguments and input before anything starts (exit 2 with one paragraph when they are
unusable), runs the :func:`flows.data_pipeline.flow.data_pipeline` flow, prints a summary, and exits 0 on
success or 1 when a step failed for good, saying which, why and where to read more.

Examples:
    $ aiop run --rows 10000 --output output/demo
    $ python -m flows.data_pipeline --rows 10000 --output output/demo
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from adapters.errors import InvalidInputError
from adapters.settings import Settings, variable_name
from flows.cli._preamble import (
    CONTEXT_SETTINGS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    fail,
    invoke,
    load_settings_or_exit,
)
from flows.data_pipeline.options import MAX_PARTITIONS, PipelineParameters, check_output_folder
from flows.steps.sample import COLUMNS as SAMPLE_COLUMNS
from flows.ui.console import docs_url

if TYPE_CHECKING:
    from flows.steps.schema import SchemaEntry

__all__ = ["command", "main", "parse_args"]


class _AtLeast(click.ParamType[int]):
    """A whole number of at least ``low`` (and at most ``high``, because ``why``)."""

    name = "integer"

    def __init__(self, low: int, high: int | None = None, why: str = "") -> None:
        self.low, self.high, self.why = low, high, why

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if number < self.low:
            self.fail(f"{number} is too small; give {self.low} or more", param, ctx)
        if self.high is not None and number > self.high:
            self.fail(f"{number} is too many; give at most {self.high} ({self.why})", param, ctx)
        return number


@click.command(
    "run",
    context_settings=CONTEXT_SETTINGS,
    short_help="Run the data pipeline (the main job).",
    help="Run the data pipeline: ingest a CSV (or a generated sample), validate it and quarantine"
    " bad rows, write typed partitioned Parquet, aggregate per group, and report.",
    epilog=f"Guide: {docs_url('guides/data-pipeline/')}",
)
@click.option("--input", "input_", metavar="PATH", help="CSV file to process (header line first)")
@click.option(
    "--rows",
    type=_AtLeast(0),
    default=100_000,
    show_default=False,
    help="rows of the generated sample when no --input is given (default 100000)",
)
@click.option("--seed", type=int, default=42, help="seed of the generated sample (default 42)")
@click.option("--schema", metavar="FILE", help="YAML file of column: type")
@click.option(
    "--partitions",
    type=_AtLeast(
        1,
        MAX_PARTITIONS,
        "each partition is one step process, and all of them start at once; more partitions"
        " than CPUs only add processes competing for the same cores",
    ),
    default=None,
    help="Parquet partitions, transformed in parallel (default: CPU count; at most"
    f" {MAX_PARTITIONS})",
)
@click.option(
    "--group-by",
    metavar="COLUMN",
    help="column to aggregate by (a name starting with '-': --group-by=NAME)",
)
@click.option("--output", metavar="DIR", help="output folder (default output/<timestamp>)")
@click.option(
    "--work-dir",
    metavar="DIR",
    default=None,
    help=f"where step outputs are kept between runs, outside --output (default"
    f" {variable_name('work_dir')}, else .aiop/work)",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "dagger", "local"]),
    default=None,
    help=f"where steps run (default {variable_name('backend')}, else auto: Dagger if an engine"
    " is reachable)",
)
@click.option(
    "--summarize",
    is_flag=True,
    help="last, write summary.md beside the results with a 'summarize' agent (an LLM; needs"
    " a Dagger engine and its provider key, else skipped with one line)",
)
@click.option(
    "--chaos",
    metavar="SPEC",
    default=None,
    help="fault plan to inject, e.g. 'step=transform,kind=transient-exit,times=2'"
    f" (default {variable_name('chaos')}); see {docs_url('explanation/self-healing/#fault-drills')}",
)
@click.pass_context
def command(ctx: click.Context, /, **given: Any) -> int:
    settings = load_settings_or_exit()
    options = _checked(ctx, settings, given)
    with contextlib.ExitStack() as held:
        _hold_output(Path(options["output"]), held)
        return _run(options, settings)


def _checked(ctx: click.Context, settings: Settings, given: dict[str, Any]) -> PipelineParameters:
    if (
        given["input_"]
        and ctx.get_parameter_source("rows") is click.core.ParameterSource.COMMANDLINE
    ):
        raise click.UsageError("--rows is not allowed with --input (it sizes the generated sample)")
    return check_options(settings, **given)


def parse_args(
    argv: Sequence[str] | None = None, settings: Settings | None = None
) -> PipelineParameters:
    """Parse and check a command line of ``aiop run`` into the flow's keyword arguments (defaults
    from ``settings``, else the defaults); raises :class:`~flows.cli._preamble.UsageError` for
    unusable input and :class:`click.UsageError` for bad usage."""
    settings = settings if settings is not None else Settings.model_construct()
    with command.make_context("aiop run", list(argv or [])) as ctx:
        return _checked(ctx, settings, dict(ctx.params))


def check_options(
    settings: Settings,
    *,
    input_: str | None,
    rows: int,
    seed: int,
    schema: str | None,
    partitions: int | None,
    group_by: str | None,
    output: str | None,
    work_dir: str | None,
    backend: str | None,
    summarize: bool,
    chaos: str | None,
) -> PipelineParameters:
    """The command's options checked into the flow's keyword arguments; raises
    :class:`~flows.cli._preamble.UsageError` for unusable input."""
    header: list[str] | None = None
    if input_:
        header = _check_input(Path(input_))
    declared = _check_schema(Path(schema), header) if schema else {}
    if group_by and header is not None and group_by not in header:
        raise UsageError(
            f"--group-by {group_by!r} is not a column of {input_}; its columns are"
            f" {', '.join(header)}. Pass one of those."
        )
    if group_by and header is None and group_by not in SAMPLE_COLUMNS:
        raise UsageError(
            f"--group-by {group_by!r} is not a column of the generated sample; its columns are"
            f" {', '.join(SAMPLE_COLUMNS)}."
        )
    out = Path(output or Path("output") / time.strftime("%Y%m%d-%H%M%S"))
    if work_dir is None:
        work_dir = str(settings.work_dir)
        work_label = f"{variable_name('work_dir')}={work_dir}"
    else:
        work_label = f"--work-dir {work_dir}"
    try:
        check_output_folder(
            out, input=input_, schema_file=schema, work_dir=work_dir, work_label=work_label
        )
    except InvalidInputError as exc:
        raise UsageError(str(exc)) from None
    if (backend or settings.backend) != "dagger":
        _check_cache_dir(settings)
    if input_ and not group_by:  # reads the input's first rows: after the cheaper checks
        _check_group_by(Path(input_), declared)
    if chaos:
        from adapters.chaos import parse_plan

        try:
            parse_plan(chaos, source="--chaos")
        except InvalidInputError as exc:
            raise UsageError(str(exc)) from None
    return PipelineParameters(
        input=input_,
        rows=rows,
        seed=seed,
        schema_file=schema,
        partitions=partitions,
        group_by=group_by,
        output=str(out),
        work_dir=work_dir,
        backend=backend,
        summarize=summarize,
        chaos=chaos,
    )


def _check_input(path: Path) -> list[str]:
    """The input's column names, by the same parser and rules as the steps (flows.steps.header)."""
    from flows.steps._io import DataError
    from flows.steps.header import check_input

    try:
        return list(check_input(path).columns)
    except DataError as exc:
        raise UsageError(
            f"--input: {exc}. The input must be a UTF-8 CSV file whose first line names the"
            f" columns; see {docs_url('guides/data-pipeline/')}#column-names."
        ) from None


def _check_schema(path: Path, header: list[str] | None) -> dict[str, SchemaEntry]:
    """The ``--schema`` file's lines by column, read by the ``validate`` step's own parser and
    rules (checked against the input's ``header`` when there is one)."""
    from flows.steps._io import DataError
    from flows.steps.schema import SchemaError, read_schema, resolve_schema

    try:
        entries = read_schema(path)
        if header is not None:
            return resolve_schema(entries, header, str(path))
        return {e.column: e for e in entries}
    except SchemaError as exc:
        if exc.unknown_column and header is not None:
            problem = (
                f"column {exc.column!r} is not in the input; its columns are"
                f" {', '.join(header)}. Fix the name or remove the line."
            )
        else:
            problem = exc.problem
        raise UsageError(f"--schema {path}, line {exc.line}: {problem}") from None
    except DataError as exc:
        raise UsageError(f"--schema {path}: {exc}") from None


def _check_group_by(path: Path, declared: dict[str, SchemaEntry]) -> None:
    """Refuse an input without ``--group-by`` whose first records do not name the column to group
    by, before any step runs; the flow makes the same choice (flows.steps.group_by)."""
    from flows.steps._io import DataError
    from flows.steps.group_by import choose_group_by

    try:
        choose_group_by(path, declared)
    except DataError as exc:
        raise UsageError(
            f"--group-by: {exc}. See {docs_url('guides/data-pipeline/')}#group-by."
        ) from None


def _check_cache_dir(settings: Settings) -> None:
    """The local runner's cache folder (where an agent's declared ``caches:`` live) must be
    usable before the first step writes to it."""
    from adapters.local_runner import cache_root
    from adapters.ownership import check_writable

    folder = cache_root(settings.cache_dir)
    label = (
        f"{variable_name('cache_dir')}={folder}"
        if settings.cache_dir is not None
        else f"the local runner's cache folder {folder}"
    )
    try:
        check_writable(folder.absolute(), label)
    except InvalidInputError as exc:
        raise UsageError(str(exc)) from None


def _hold_output(output: Path, held: contextlib.ExitStack) -> None:
    """Claim the output folder and hold it for this run (one run at a time per folder): a second
    run into it is refused in one line before its flow run is created."""
    from adapters.ownership import claim, hold

    try:
        claim(output.resolve())
        held.enter_context(hold(output.resolve(), label=f"--output {output}"))
    except InvalidInputError as exc:
        fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        fail(
            f"--output {output} cannot be written ({exc.strerror or exc}); give a folder you can"
            " write to, or fix its permissions",
            EXIT_USAGE,
        )


def _run(options: PipelineParameters, settings: Settings) -> int:
    from flows.ui.console import quiet_prefect_defaults

    # Before Prefect is imported: a local server started here comes up while we import.
    server = quiet_prefect_defaults(settings, start=True).local
    from adapters import tracing
    from flows.data_pipeline.flow import PipelineFailed, data_pipeline
    from flows.ui.console import print_summary, run_flow_quietly

    tracing.configure(settings.trace_config())  # before the flow run: its span is the root

    with tracing.continued():  # a TRACEPARENT set for this command is the run's parent
        state = run_flow_quietly(
            lambda: data_pipeline(**options, settings=settings, return_state=True),
            server,
            debug=settings.debug,
        )
    outcome: Any = state.data if state.is_failed() else None
    if state.is_failed() and not isinstance(outcome, BaseException):
        outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, InvalidInputError):
        fail(f"{outcome} (nothing was processed past the failing check)", EXIT_USAGE)
    if isinstance(outcome, PipelineFailed):
        anchor = outcome.cause_anchor
        fail(
            f"the pipeline stopped at step {outcome.step!r}: {outcome.message}\nPartial results and"
            f" the step list are in {Path(options['output']) / 'summary.json'}. Read more:"
            f" {docs_url('troubleshooting/')}#{anchor}",
            EXIT_FAILED,
        )
    if state.is_failed() or not state.is_completed():
        fail(
            f"the pipeline did not complete ({state.name}: {state.message}). Read more:"
            f" {docs_url('troubleshooting/')}",
            EXIT_FAILED,
        )
    summary = state.result()
    print_summary(summary)
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None, prog_name: str = "python -m flows.data_pipeline"
) -> int:
    """``python -m flows.data_pipeline``: the main job under the name the design gives it."""
    return invoke(command, argv, prog_name)
