"""Shared fixtures: a small generated sample run through the steps once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows.steps import aggregate, ingest, transform, validate

ROOT = Path(__file__).resolve().parents[3]
SAMPLE_ROWS = 6_000
SAMPLE_SEED = 11
PARTITIONS = 3


def query(sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` run on a fresh in-memory DuckDB."""
    con = duckdb.connect()
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def quiet(_: str) -> None:
    """A ``log`` that prints nothing."""


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flows.steps ARGS`` from the project root."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flows.steps", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=full_env,
    )


@dataclass(frozen=True)
class Pipeline:
    """Directories of one pipeline run over the generated sample."""

    ingest: Path
    validate: Path
    parts: Path  # the transform steps' outputs p0/, p1/...
    aggregate: Path

    @property
    def csv(self) -> Path:
        return self.ingest / "input.csv"


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """ingest (generate) -> validate into 3 partitions -> transform x3 -> aggregate by category."""
    root = tmp_path_factory.mktemp("pipeline")
    run = Pipeline(root / "ingest", root / "validate", root / "parts", root / "aggregate")
    ingest.run(run.ingest, rows=SAMPLE_ROWS, seed=SAMPLE_SEED, log=quiet)
    validate.run(run.csv, run.validate, partitions=PARTITIONS, log=quiet)
    for i in range(PARTITIONS):
        transform.run(run.validate, run.parts / f"p{i}", i, PARTITIONS, "category", log=quiet)
    aggregate.run(run.parts, "category", run.aggregate, log=quiet)
    return run


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[[str], Path]:
    """Write text (``\\n`` line ends as given) to a fresh CSV file and return its path."""
    counter = iter(range(1_000_000))

    def _write(text: str) -> Path:
        path = tmp_path / f"in{next(counter)}.csv"
        path.write_bytes(text.encode("utf-8"))
        return path

    return _write
