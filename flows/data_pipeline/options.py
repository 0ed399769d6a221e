"""The data pipeline's parameters (no Prefect import: the CLI checks them before Prefect starts).

The CLI checks its arguments into :class:`PipelineParameters`, the flow's plain keyword arguments
(what the Prefect UI shows); the flow fills the defaults once into :class:`PipelineOptions`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypedDict

__all__ = ["MAX_PARTITIONS", "PipelineOptions", "PipelineParameters", "default_partitions"]

#: The most Parquet partitions a run may ask for.
MAX_PARTITIONS = 256


def default_partitions() -> int:
    """Partitions when none are asked for: one per CPU, at most :data:`MAX_PARTITIONS`.

    The one place of this default: the flow applies it when no partitions are asked for.
    """
    return min(os.cpu_count() or 1, MAX_PARTITIONS)


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
