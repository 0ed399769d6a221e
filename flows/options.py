"""The data pipeline's parameters (no Prefect import: the CLI checks them before Prefect starts)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["PipelineOptions"]


@dataclass(frozen=True, kw_only=True)
class PipelineOptions:
    """The pipeline's parameters, checked by the CLI before the flow starts."""

    input: str | None = None
    rows: int = 100_000
    seed: int = 42
    schema_file: str | None = None
    partitions: int = field(default_factory=lambda: os.cpu_count() or 1)
    group_by: str | None = None
    output: str
    work_dir: str
    backend: str | None = None
    chaos: str | None = None
