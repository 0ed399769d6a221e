"""Command line of the pipeline steps: ``python -m flows.steps <step> [options]``.

Exit codes: 0 success; 64 bad usage; 65 unusable input (one ``error:`` line on stderr);
70 duckdb not installed (declare it under the agent's ``requirements:``); 74 a write met a storage limit: a full file system, a
quota or the file size limit (one ``error:`` line naming the file system and what is free);
1 internal error (a bug). ``--threads`` (before the
step name) or ``$AIOP_DUCKDB_THREADS`` limits DuckDB's threads.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from flows.steps import _environment

__all__ = ["EX_DATAERR", "EX_IOERR", "EX_SOFTWARE", "EX_USAGE", "build_parser", "main"]

EX_USAGE = 64
EX_DATAERR = 65
EX_SOFTWARE = 70
EX_IOERR = 74


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that exits with EX_USAGE (64) instead of 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EX_USAGE)


def _nonneg(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _duckdb_importable(args: argparse.Namespace) -> bool:
    """False if the step needs DuckDB and it cannot be imported. ``report`` and ``ingest`` of a
    given file never use it: they do not pay its import (about 70-90 ms of a step's start)."""
    if args.step == "report" or (args.step == "ingest" and args.input is not None):
        return True
    try:
        from flows.steps import _db  # noqa: F401
    except ImportError:
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of all steps."""
    parser = _Parser(prog="python -m flows.steps", description="Pipeline steps.")
    parser.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help=f"DuckDB threads (default: ${_environment.DUCKDB_THREADS}, else all cores)",
    )
    sub = parser.add_subparsers(dest="step", required=True, parser_class=_Parser)

    p = sub.add_parser("ingest", help="check the input CSV or generate a sample")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--input", help="CSV file to check (default: generate a sample)")
    p.add_argument("--rows", type=_nonneg, default=100_000, help="rows to generate")
    p.add_argument("--seed", type=int, default=42, help="generator seed")

    p = sub.add_parser("validate", help="type the CSV, quarantine bad rows")
    p.add_argument("--input", required=True, help="CSV file")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--schema", help="schema file ('column: type' per line)")
    p.add_argument("--partitions", type=_positive, default=1, help="partitions K of the valid rows")

    p = sub.add_parser("transform", help="per-group partial statistics of partitions")
    p.add_argument("--input-dir", required=True, help="validate step output directory")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--partition", type=_nonneg, required=True, help="partition index I")
    p.add_argument("--partitions", type=int, required=True, help="partition count K")
    p.add_argument(
        "--count", type=_positive, default=1, help="consecutive partitions to read, from I on"
    )
    p.add_argument("--group-by", required=True, help="group column")

    p = sub.add_parser("aggregate", help="merge the transform steps' statistics")
    p.add_argument("--input-dir", required=True, help="directory with the transform outputs")
    p.add_argument("--group-by", required=True, help="group column")
    p.add_argument("--output", required=True, help="output directory")

    p = sub.add_parser("report", help="assemble the final output folder")
    p.add_argument("--validate", required=True, help="validate step output directory")
    p.add_argument("--aggregate", required=True, help="aggregate step output directory")
    p.add_argument("--output", required=True, help="final output directory")
    return parser


def _dispatch(args: argparse.Namespace) -> None:
    if args.step == "ingest":
        from flows.steps import ingest

        ingest.run(args.output, args.input, rows=args.rows, seed=args.seed, threads=args.threads)
    elif args.step == "validate":
        from flows.steps import validate

        validate.run(
            args.input, args.output, args.schema, partitions=args.partitions, threads=args.threads
        )
    elif args.step == "transform":
        from flows.steps import transform

        transform.run(
            args.input_dir,
            args.output,
            args.partition,
            args.partitions,
            args.group_by,
            count=args.count,
            threads=args.threads,
        )
    elif args.step == "aggregate":
        from flows.steps import aggregate

        aggregate.run(args.input_dir, args.group_by, args.output, threads=args.threads)
    else:
        from flows.steps import report

        report.run(args.validate, args.aggregate, args.output)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the step and map errors to exit codes.

    Returns:
        The process exit code.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        told = _environment.read(os.environ)
    except _environment.StepEnvironmentError as exc:
        parser.error(str(exc))
    if args.threads is None:
        args.threads = told.duckdb_threads
    from flows.steps._io import DataError, InvariantError, UsageError

    try:
        if not _duckdb_importable(args):
            raise ModuleNotFoundError("No module named 'duckdb'", name="duckdb")
        _dispatch(args)
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.partition(".")[0] == "flows":
            raise
        print(
            f"error: {exc.name} is not installed in this Python; declare its package under the"
            " agent's requirements: (the Dagger runner installs them into the step's image) or"
            " install it where the step runs",
            file=sys.stderr,
        )
        return EX_SOFTWARE
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_DATAERR
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_USAGE
    except InvariantError as exc:
        print(f"error: internal: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from pathlib import Path

        from flows.steps._storage import describe

        line = describe(exc, Path(getattr(args, "output", None) or "."))
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return EX_IOERR
    return 0


if __name__ == "__main__":
    sys.exit(main())
