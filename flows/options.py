"""The data pipeline's parameters (no Prefect import: the CLI checks them before Prefect starts)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["MAX_PARTITIONS", "PipelineOptions", "default_partitions"]

#: The most Parquet partitions a run may ask for.
MAX_PARTITIONS = 256


def default_partitions() -> int:
    """Partitions when none are asked for: one per CPU, at most :data:`MAX_PARTITIONS`.

    The one place of this default: the CLI's ``--partitions``, the flow and the options use it.
    """
    return min(os.cpu_count() or 1, MAX_PARTITIONS)


@dataclass(frozen=True, kw_only=True)
class PipelineOptions:
    """The pipeline's parameters, checked by the CLI before the flow starts."""

    input: str | None = None
    rows: int = 100_000
    seed: int = 42
    schema_file: str | None = None
    partitions: int = field(default_factory=default_partitions)
    group_by: str | None = None
    output: str
    work_dir: str
    backend: str | None = None
    summarize: bool = False
    chaos: str | None = None
