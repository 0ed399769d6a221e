"""The ``ingest`` step: check a given CSV file, or generate the sample CSV.

With ``--input FILE`` the file is checked (exists, regular, non-empty, UTF-8 text without
NUL bytes in its first 64 KiB, a header by the rules of :mod:`flows.steps.header`) but
*not* copied:
``ingest.json`` points at it (``"source"``: the path as given). Without ``--input`` the
deterministic sample (:mod:`flows.steps.sample`) is written to ``OUTPUT/input.csv`` and
``"source"`` is ``"input.csv"``, relative to ``ingest.json``'s folder, so that the step's
output is byte-identical wherever it runs (host or container, any output path).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.steps import sample
from flows.steps._csv import check_input
from flows.steps._io import ensure_dir, write_json

__all__ = ["DEFAULT_ROWS", "DEFAULT_SEED", "run"]

DEFAULT_ROWS = 100_000
DEFAULT_SEED = 42


def run(
    output_dir: str | os.PathLike[str],
    input_path: str | os.PathLike[str] | None = None,
    *,
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the ingest step.

    Args:
        output_dir: Directory for ``ingest.json`` (and ``input.csv`` when generating).
        input_path: CSV file to check; None generates the sample instead.
        rows: Data rows to generate.
        seed: Generator seed.
        threads: DuckDB threads for the generator (default: all cores).
        log: Progress printer.

    Returns:
        The content written to ``ingest.json``.

    Raises:
        DataError: If ``input_path`` is not a usable CSV file.
    """
    if input_path is not None:
        src = check_input(input_path)
        out = ensure_dir(output_dir)
        data: dict[str, Any] = {
            "source": str(input_path),
            "generated": False,
            "columns": list(src.columns),
            "bytes": src.size,
        }
        log(f"ingest: {input_path}: {len(src.columns)} columns, {src.size} bytes")
    else:
        out = ensure_dir(output_dir)
        target = Path(output_dir) / "input.csv"
        size = sample.generate(target, rows, seed, threads=threads)
        malformed = sample.count_malformed(rows, seed)
        data = {
            "source": target.name,  # relative to ingest.json: the same bytes on every runner
            "generated": True,
            "rows": rows,
            "seed": seed,
            "columns": list(sample.COLUMNS),
            "bytes": size,
            "malformed_rows": malformed,
        }
        log(f"ingest: generated {target.name}: {rows} rows ({malformed} malformed), {size} bytes")
    write_json(out / "ingest.json", data)
    return data
