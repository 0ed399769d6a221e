"""``python -m flows.data_pipeline``: the main job.

Checks its arguments and input before anything starts (exit 2 with one paragraph when they are
unusable), runs the :func:`flows.pipeline.data_pipeline` flow, prints a summary, and exits 0 on
success or 1 when a step failed for good, saying which, why and where to read more.

Examples:
    $ python -m flows.data_pipeline --rows 10000 --output output/demo
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from flows._console import docs_url, quiet_prefect_defaults
from flows.options import PipelineOptions
from flows.steps.sample import COLUMNS as SAMPLE_COLUMNS

__all__ = ["main", "parse_args"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_SNIFF_BYTES = 64 * 1024
_TYPES = {"boolean", "integer", "float", "date", "timestamp", "string"}


class UsageError(Exception):
    """Bad usage or unusable input: reported in one paragraph, exit 2."""


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small; give {low} or more")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.data_pipeline",
        description=(
            "Run the data pipeline: ingest a CSV (or a generated sample), validate it and quarantine"
            " bad rows, write typed partitioned Parquet, aggregate per group, and report."
        ),
        epilog=(
            "--serve (alone) serves the flow as a deployment on the Prefect server instead."
            f" Guide: {docs_url('guides/data-pipeline/')}"
        ),
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
        type=_at_least(1),
        default=os.cpu_count() or 1,
        help="Parquet partitions, transformed in parallel (default: CPU count)",
    )
    parser.add_argument("--group-by", metavar="COLUMN", help="column to aggregate by")
    parser.add_argument(
        "--output", metavar="DIR", help="output folder (default output/<timestamp>)"
    )
    parser.add_argument(
        "--work-dir",
        metavar="DIR",
        default=os.environ.get("AIOP_WORK_DIR", ".aiop/work"),
        help="where step outputs are kept between runs (default .aiop/work or AIOP_WORK_DIR)",
    )
    parser.add_argument(
        "--backend",
        choices=["auto", "dagger", "local"],
        default=None,
        help="where steps run (default AIOP_BACKEND, else auto: Dagger if an engine is reachable)",
    )
    parser.add_argument(
        "--chaos",
        metavar="SPEC",
        default=os.environ.get("AIOP_CHAOS"),
        help="fault plan to inject, e.g. 'step=transform,kind=transient-exit,times=2'"
        f" (default AIOP_CHAOS); see {docs_url('explanation/self-healing/#fault-drills')}",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> PipelineOptions:
    """Parse and check the command line; raises :class:`UsageError` for unusable input."""
    ns = _parser().parse_args(argv)
    header: list[str] | None = None
    if ns.input:
        header = _check_input(Path(ns.input))
    if ns.schema:
        _check_schema(Path(ns.schema), header)
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
    _check_output(output)
    if ns.chaos:
        from adapters.chaos import parse_plan
        from adapters.errors import InvalidInputError

        try:
            parse_plan(ns.chaos, source="--chaos")
        except InvalidInputError as exc:
            raise UsageError(str(exc)) from None
        os.environ["AIOP_CHAOS"] = ns.chaos
    return PipelineOptions(
        input=ns.input,
        rows=ns.rows,
        seed=ns.seed,
        schema_file=ns.schema,
        partitions=ns.partitions,
        group_by=ns.group_by,
        output=str(output),
        work_dir=ns.work_dir,
        backend=ns.backend,
    )


def _check_input(path: Path) -> list[str]:
    fix = "Pass the path of a UTF-8 CSV file whose first line names the columns."
    if not path.exists():
        raise UsageError(f"--input {path}: no such file. {fix}")
    if not path.is_file():
        raise UsageError(f"--input {path}: not a regular file. {fix}")
    if path.stat().st_size == 0:
        raise UsageError(f"--input {path}: the file is empty. {fix}")
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if b"\x00" in head:
        raise UsageError(f"--input {path}: the file looks binary (it contains NUL bytes). {fix}")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the sniff boundary
            raise UsageError(
                f"--input {path}: byte {exc.start} is not UTF-8. Convert the file to UTF-8"
                " (e.g. iconv -f latin1 -t utf-8) and run again."
            ) from None
        text = head[: exc.start].decode("utf-8")
    first = text.splitlines()[0] if text.splitlines() else ""
    columns = [c.strip().strip('"') for c in first.split(",")]
    if not first.strip() or any(not c for c in columns):
        raise UsageError(f"--input {path}: the header line has an empty column name. {fix}")
    if len(set(columns)) != len(columns):
        raise UsageError(f"--input {path}: the header names a column twice. {fix}")
    return columns


def _check_schema(path: Path, header: list[str] | None) -> None:
    if not path.is_file():
        raise UsageError(
            f"--schema {path}: no such file. Pass a YAML file of 'column: type' lines."
        )
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        column, sep, kind = text.partition(":")
        column, kind = column.strip().strip("'\""), kind.strip().strip("'\"").lower()
        if not sep or not column or kind not in _TYPES:
            raise UsageError(
                f"--schema {path}, line {number}: {line.strip()!r} is not 'column: type' with a type"
                f" among {', '.join(sorted(_TYPES))}."
            )
        if header is not None and column not in header:
            raise UsageError(
                f"--schema {path}, line {number}: column {column!r} is not in the input; its columns"
                f" are {', '.join(header)}."
            )


def _check_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is a file; give a folder (it will be created).")
    if output.is_dir() and any(output.iterdir()) and not (output / "summary.json").exists():
        raise UsageError(
            f"--output {output} already holds files that are not a pipeline result; the pipeline"
            " replaces its output folder, so give a new or empty folder."
        )


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` as one paragraph on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m flows.data_pipeline``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--serve"]:
        from flows.serve import main as serve

        return serve(args[1:])
    try:
        options = parse_args(argv)
    except UsageError as exc:
        fail(str(exc), EXIT_USAGE)
    quiet_prefect_defaults()
    from flows.local_server import start_or_reuse

    server = start_or_reuse()  # before Prefect is imported: it starts while we import
    from adapters import InvalidInputError
    from flows._console import print_summary, run_flow_quietly
    from flows.pipeline import PipelineFailed, data_pipeline

    state = run_flow_quietly(
        lambda: data_pipeline(**dataclasses.asdict(options), return_state=True), server
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
            f" the step list are in {Path(options.output) / 'summary.json'}. Read more:"
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
    # `from flows.data_pipeline import data_pipeline` gives the flow, imported on first use.
    if name == "data_pipeline":
        from flows.pipeline import data_pipeline

        return data_pipeline
    raise AttributeError(name)


if __name__ == "__main__":
    sys.exit(main())
