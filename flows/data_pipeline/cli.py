"""``python -m flows.data_pipeline``: the main job.

Checks its arguments and input before anything starts (exit 2 with one paragraph when they are
unusable), runs the :func:`flows.data_pipeline.flow.data_pipeline` flow, prints a summary, and exits 0 on
success or 1 when a step failed for good, saying which, why and where to read more.

Examples:
    $ python -m flows.data_pipeline --rows 10000 --output output/demo
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from adapters.errors import InvalidInputError
from adapters.settings import Settings, load_settings, variable_name
from flows.data_pipeline.options import MAX_PARTITIONS, PipelineParameters, check_output_folder
from flows.steps.sample import COLUMNS as SAMPLE_COLUMNS
from flows.ui.console import docs_url, quiet_prefect_defaults

if TYPE_CHECKING:
    from flows.steps.schema import SchemaEntry

__all__ = ["main", "parse_args"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: The most partitions the command line accepts (each one is a step process).


class UsageError(Exception):
    """Bad usage or unusable input: reported in one paragraph, exit 2."""


def _at_least(low: int, high: int | None = None, why: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``low`` (and at most ``high``, because ``why``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small; give {low} or more")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is too many; give at most {high} ({why})")
        return value

    return parse


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.data_pipeline",
        description=(
            "Run the data pipeline: ingest a CSV (or a generated sample), validate it and quarantine"
            " bad rows, write typed partitioned Parquet, aggregate per group, and report."
        ),
        epilog=f"Guide: {docs_url('guides/data-pipeline/')}",
    )
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--input", metavar="PATH", help="CSV file to process (header line first)")
    src.add_argument(
        "--rows",
        type=_at_least(0),
        default=100_000,
        help="rows of the generated sample when no --input is given (default 100000)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated sample")
    parser.add_argument("--schema", metavar="FILE", help="YAML file of column: type")
    parser.add_argument(
        "--partitions",
        type=_at_least(
            1,
            MAX_PARTITIONS,
            "each partition is one step process, and all of them start at once; more partitions"
            " than CPUs only add processes competing for the same cores",
        ),
        default=None,
        help="Parquet partitions, transformed in parallel (default: CPU count; at most"
        f" {MAX_PARTITIONS})",
    )
    parser.add_argument(
        "--group-by",
        metavar="COLUMN",
        help="column to aggregate by (a name starting with '-': --group-by=NAME)",
    )
    parser.add_argument(
        "--output", metavar="DIR", help="output folder (default output/<timestamp>)"
    )
    parser.add_argument(
        "--work-dir",
        metavar="DIR",
        default=None,
        help=f"where step outputs are kept between runs, outside --output (default"
        f" {variable_name('work_dir')}, else .aiop/work)",
    )
    parser.add_argument(
        "--backend",
        choices=["auto", "dagger", "local"],
        default=None,
        help=f"where steps run (default {variable_name('backend')}, else auto: Dagger if an engine"
        " is reachable)",
    )
    parser.add_argument(
        "--summarize",
        action="store_true",
        help="last, write summary.md beside the results with a 'summarize' agent (an LLM; needs"
        " a Dagger engine and its provider key, else skipped with one line)",
    )
    parser.add_argument(
        "--chaos",
        metavar="SPEC",
        default=None,
        help="fault plan to inject, e.g. 'step=transform,kind=transient-exit,times=2'"
        f" (default {variable_name('chaos')}); see {docs_url('explanation/self-healing/#fault-drills')}",
    )
    return parser


def parse_args(
    argv: Sequence[str] | None = None, settings: Settings | None = None
) -> PipelineParameters:
    """Parse and check the command line into the flow's keyword arguments (defaults from
    ``settings``, else the defaults); raises :class:`UsageError` for unusable input."""
    settings = settings if settings is not None else Settings.model_construct()
    ns = _parser(settings).parse_args(argv)
    header: list[str] | None = None
    if ns.input:
        header = _check_input(Path(ns.input))
    declared = _check_schema(Path(ns.schema), header) if ns.schema else {}
    if ns.group_by and header is not None and ns.group_by not in header:
        raise UsageError(
            f"--group-by {ns.group_by!r} is not a column of {ns.input}; its columns are"
            f" {', '.join(header)}. Pass one of those."
        )
    if ns.group_by and header is None and ns.group_by not in SAMPLE_COLUMNS:
        raise UsageError(
            f"--group-by {ns.group_by!r} is not a column of the generated sample; its columns are"
            f" {', '.join(SAMPLE_COLUMNS)}."
        )
    output = Path(ns.output or Path("output") / time.strftime("%Y%m%d-%H%M%S"))
    if ns.work_dir is None:
        ns.work_dir = str(settings.work_dir)
        work_label = f"{variable_name('work_dir')}={ns.work_dir}"
    else:
        work_label = f"--work-dir {ns.work_dir}"
    _check_output(output, ns, work_label)
    if (ns.backend or settings.backend) != "dagger":
        _check_cache_dir(settings)
    if ns.input and not ns.group_by:  # reads the input's first rows: after the cheaper checks
        _check_group_by(Path(ns.input), declared)
    if ns.chaos:
        from adapters.chaos import parse_plan

        try:
            parse_plan(ns.chaos, source="--chaos")
        except InvalidInputError as exc:
            raise UsageError(str(exc)) from None
    return PipelineParameters(
        input=ns.input,
        rows=ns.rows,
        seed=ns.seed,
        schema_file=ns.schema,
        partitions=ns.partitions,
        group_by=ns.group_by,
        output=str(output),
        work_dir=ns.work_dir,
        backend=ns.backend,
        summarize=ns.summarize,
        chaos=ns.chaos,
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


#: The entries a result writes into its output folder (globs per path component).
def _check_output(output: Path, ns: argparse.Namespace, work_label: str) -> None:
    try:
        check_output_folder(
            output,
            input=ns.input,
            schema_file=ns.schema,
            work_dir=ns.work_dir,
            work_label=work_label,
        )
    except InvalidInputError as exc:
        raise UsageError(str(exc)) from None


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


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` as one paragraph on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m flows.data_pipeline``."""
    try:
        settings = load_settings()
        options = parse_args(argv, settings)
    except (UsageError, InvalidInputError) as exc:
        fail(str(exc), EXIT_USAGE)
    with contextlib.ExitStack() as held:
        _hold_output(Path(options["output"]), held)
        return _run(options, settings)


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


def __getattr__(name: str) -> Any:
    # `from flows.data_pipeline.cli import data_pipeline` gives the flow, imported on first use.
    if name == "data_pipeline":
        from flows.data_pipeline.flow import data_pipeline

        return data_pipeline
    raise AttributeError(name)


if __name__ == "__main__":
    sys.exit(main())
