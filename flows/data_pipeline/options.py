"""The data pipeline's parameters and the checks of its folders (no Prefect import: the CLI
checks them before Prefect starts; the flow checks the folders again).

The CLI checks its arguments into :class:`PipelineParameters`, the flow's plain keyword arguments
(what the Prefect UI shows); the flow fills the defaults once into :class:`PipelineOptions`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from adapters.errors import InvalidInputError

__all__ = [
    "MAX_PARTITIONS",
    "RESULT_ENTRIES",
    "PipelineOptions",
    "PipelineParameters",
    "check_output_folder",
    "default_partitions",
    "partition_runs",
    "step_slots",
]

#: The most Parquet partitions a run may ask for.
MAX_PARTITIONS = 256


def default_partitions() -> int:
    """Partitions when none are asked for: one per CPU, at most :data:`MAX_PARTITIONS`.

    The one place of this default: the flow applies it when no partitions are asked for.
    """
    return min(os.cpu_count() or 1, MAX_PARTITIONS)


def step_slots(backend: str) -> int | None:
    """Transform steps that run at once: one per CPU with the ``local`` backend (each is a
    process on this machine; more only queue for the cores, hold their memory and pay their
    start), no bound with ``dagger`` (the engine, which may be remote, schedules its containers
    itself).

    A Prefect work pool of several workers, or a remote Dagger engine, is how to run more
    partitions at once than this machine has cores.
    """
    return (os.cpu_count() or 1) if backend == "local" else None


def partition_runs(partitions: int, slots: int | None) -> list[tuple[int, int]]:
    """The transform steps of a run as ``(first partition, count)``: one step per partition when
    they fit the slots (or there is no bound), else one step per slot, each over a contiguous run
    of partitions of nearly equal length.

    Examples:
        >>> partition_runs(2, 2), partition_runs(64, 2), partition_runs(5, 2)
        ([(0, 1), (1, 1)], [(0, 32), (32, 32)], [(0, 2), (2, 3)])
        >>> len(partition_runs(64, None))
        64
    """
    if slots is None or partitions <= slots:
        return [(i, 1) for i in range(partitions)]
    edges = [partitions * j // slots for j in range(slots + 1)]
    return [(edges[j], edges[j + 1] - edges[j]) for j in range(slots)]


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
