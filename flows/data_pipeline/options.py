"""The data pipeline's parameters and the checks of its folders (no Prefect import: the CLI
checks them before Prefect starts; the flow checks the folders again).

The CLI checks its arguments into :class:`PipelineParameters`, the flow's plain keyword arguments
(what the Prefect UI shows); the flow fills the defaults once into :class:`PipelineOptions`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, TypeVar

from adapters.errors import InvalidInputError

__all__ = [
    "MAX_PARTITIONS",
    "RESULT_ENTRIES",
    "PipelineOptions",
    "PipelineParameters",
    "check_output_folder",
    "default_partitions",
    "gather_bounded",
    "step_slots",
]

#: The most Parquet partitions a run may ask for.
MAX_PARTITIONS = 256


def default_partitions() -> int:
    """Partitions when none are asked for: one per CPU, at most :data:`MAX_PARTITIONS`.

    The one place of this default: the flow applies it when no partitions are asked for.
    """
    return min(os.cpu_count() or 1, MAX_PARTITIONS)


_T = TypeVar("_T")


def step_slots(backend: str) -> int | None:
    """Transform steps that may run at once: one per CPU with the ``local`` backend (each is a
    process on this machine; more only queue for the cores and hold their memory), no bound
    with ``dagger`` (the engine, which may be remote, schedules its containers itself).

    A Prefect work pool of several workers, or a remote Dagger engine, is how to run more
    partitions at once than this machine has cores.
    """
    return (os.cpu_count() or 1) if backend == "local" else None


async def gather_bounded(
    calls: Sequence[Callable[[], Awaitable[_T]]], limit: int | None
) -> list[_T]:
    """Run ``calls`` concurrently, at most ``limit`` at a time (all at once for None); the
    results in the order of ``calls``. A call starts only when a slot is free, so its task
    run, its process and its memory do not exist before it can use a core."""
    if limit is None or limit >= len(calls):
        return list(await asyncio.gather(*(call() for call in calls)))
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[_T]]) -> _T:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(call) for call in calls)))


class PipelineParameters(TypedDict):
    """The ``data_pipeline`` flow's keyword arguments as the CLI passes them, checked (None: the
    flow's default)."""

    input: str | None
    rows: int
    seed: int
    schema_file: str | None
    partitions: int | None
    group_by: str | None
    output: str
    work_dir: str | None
    backend: str | None
    summarize: bool
    chaos: str | None


@dataclass(frozen=True, kw_only=True)
class PipelineOptions:
    """One run's parameters, every default filled in: built once, by the flow."""

    input: str | None = None
    rows: int = 100_000
    seed: int = 42
    schema_file: str | None = None
    partitions: int
    group_by: str | None = None
    output: str
    work_dir: str
    backend: str | None = None
    summarize: bool = False
    chaos: str | None = None
    #: Why the run groups by ``group_by`` (given, the sample's column, or chosen from the input).
    group_by_reason: str = ""


RESULT_ENTRIES = ("summary.json", "aggregates.csv", "quarantine.csv", "data/part-*.parquet")


def check_output_folder(
    output: str | os.PathLike[str],
    *,
    input: str | None = None,
    schema_file: str | None = None,
    work_dir: str | None = None,
    work_label: str | None = None,
) -> None:
    """Refuse an output folder (and a work folder) the pipeline may not write, before any step.

    The pipeline writes into an absent or empty folder, or into a folder it owns (one that holds the
    ``.aiop-manifest.json`` of an earlier result), where it replaces only the files it wrote. The
    input and the schema may not be among those files, and the folder must be writable. The work
    folder must be outside the output folder (step outputs kept between runs would fill the
    result) and writable; ``work_label`` names it in messages (default ``--work-dir DIR``).

    Raises:
        InvalidInputError: one paragraph naming the folder, what is wrong and the fix.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     check_output_folder(Path(tmp) / "new-results")
    """
    from adapters.ownership import check_destination, check_writable

    if work_dir is not None:
        work, out = Path(os.path.realpath(work_dir)), Path(os.path.realpath(output))
        if work == out or work.is_relative_to(out):
            where = "is the output folder" if work == out else "is inside the output folder"
            raise InvalidInputError(
                f"{work_label or f'--work-dir {work_dir}'} {where} --output {output}: the step"
                " outputs kept there"
                " between runs would fill the result. Give a work folder outside --output (the"
                " default is .aiop/work)."
            )
    check_destination(
        Path(output),
        label=f"--output {output}",
        reserved=RESULT_ENTRIES,
        protect={"--input": input, "--schema": schema_file},
    )
    if work_dir is not None:
        check_writable(Path(work_dir).absolute(), work_label or f"--work-dir {work_dir}")
