"""Which column the pipeline groups by when ``--group-by`` is not given, decided before any step.

The command line and the flow both call :func:`choose_group_by` before the first step runs, so a
file that does not say which column to group by is a usage error (exit 2, no flow run), never a run
that fails after ingest and validate. The decision reads only the start of the file (at most
:data:`SAMPLE_ROWS` records and :data:`SAMPLE_BYTES`), by the CSV rules of
:mod:`flows.steps._records` (Python's ``csv``, which reads quotes as the scanner does).

A column can be grouped by when, in those records, it is text with between 2 and
:data:`MAX_GROUP_VALUES` distinct non-null values: typed by the schema as ``string``, or inferred
as ``string`` (:mod:`flows.steps.types`) and not mostly numbers or dates in some form
(``$42.00``, ``03/15/2024``, numbers among a few words: :func:`flows.steps.readings.suggest` reads
more than half of its values), which are measures, not groups. Exactly one such column is chosen; none or several is a usage error that
names them. Standard library only.
"""

from __future__ import annotations

import csv
import io
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flows.steps._io import DataError, read_regular
from flows.steps.header import check_input
from flows.steps.readings import suggest
from flows.steps.schema import SchemaEntry
from flows.steps.types import NULL_TOKENS, classify, infer_from_counts

__all__ = [
    "MAX_GROUP_VALUES",
    "SAMPLE_BYTES",
    "SAMPLE_ROWS",
    "Choice",
    "choose_group_by",
    "group_by_option",
]

#: Most distinct values of a column to group by.
MAX_GROUP_VALUES = 50
#: Records and bytes read from the start of the file to choose.
SAMPLE_ROWS = 20_000
SAMPLE_BYTES = 8 * 1024 * 1024
_WS = " \t\n\r\x0b\x0c"


@dataclass(frozen=True)
class Choice:
    """The chosen column and why, in words (for the console and ``summary.json``)."""

    column: str
    reason: str


def choose_group_by(
    path: str | os.PathLike[str], declared: Mapping[str, SchemaEntry] | None = None
) -> Choice:
    """The one text column of ``path`` with 2 to 50 distinct values in its first records.

    Args:
        path: The input CSV file.
        declared: The schema's lines by column (their types decide instead of inference).

    Raises:
        DataError: The file is unusable, or none or several columns qualify (one paragraph
            naming them and how to pass ``--group-by``).

    Examples:
        >>> import tempfile, os
        >>> with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as fh:
        ...     _ = fh.write("id,region,amount\\n1,North,$5.00\\n2,South,$7.00\\n")
        >>> choose_group_by(fh.name).column
        'region'
        >>> os.unlink(fh.name)
    """
    src = check_input(path)
    rows = _first_records(src.path, len(src.columns))
    declared = declared or {}
    candidates = [
        name
        for i, name in enumerate(src.columns)
        if _groupable(name, [r[i] for r in rows], declared.get(name))
    ]
    where = f"in the first {len(rows)} rows of {src.path}"
    if len(candidates) == 1:
        return Choice(
            candidates[0],
            f"the only text column with 2 to {MAX_GROUP_VALUES} distinct values {where}",
        )
    if candidates:
        listed = ", ".join(repr(c) for c in candidates[:10])
        listed += f" and {len(candidates) - 10} more" if len(candidates) > 10 else ""
        raise DataError(
            f"cannot tell which column to group by: {listed} each have 2 to {MAX_GROUP_VALUES}"
            f" distinct text values {where}. Pass the one you want, e.g."
            f" {group_by_option(candidates[0])}"
        )
    raise DataError(
        f"cannot tell which column to group by: no text column has 2 to {MAX_GROUP_VALUES}"
        f" distinct values {where} (its columns: {_listed(src.columns)}). Pass one with"
        " --group-by COLUMN"
    )


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:20])
    return shown + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def group_by_option(name: str) -> str:
    """The ``--group-by`` option naming ``name``, as a shell command line writes it.

    Examples:
        >>> group_by_option("region"), group_by_option("a b"), group_by_option("-x")
        ('--group-by region', "--group-by 'a b'", '--group-by=-x')
    """
    return (
        f"--group-by={shlex.quote(name)}"
        if name.startswith("-")
        else f"--group-by {shlex.quote(name)}"
    )


def _first_records(path: os.PathLike[str], width: int) -> list[list[str]]:
    """The first records of ``path`` with ``width`` fields (others skipped), header excluded."""
    head, size = read_regular(path, "input file", "pass a CSV file", SAMPLE_BYTES)
    if len(head) < size:  # cut after the last line end: the record beyond may be partial
        head = head[: max(head.rfind(b"\n"), head.rfind(b"\r")) + 1]
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    rows: list[list[str]] = []
    try:
        for row in reader:
            if len(row) == width:
                rows.append(row)
                if len(rows) >= SAMPLE_ROWS:
                    break
    except csv.Error:  # a quote left open at the cut: the records before it are enough
        pass
    return rows


def _groupable(name: str, values: Sequence[str], declared: SchemaEntry | None) -> bool:
    """True if ``values`` (one column's) are text with 2 to :data:`MAX_GROUP_VALUES` values."""
    counts: dict[str, int] = {}
    for value in values:
        text = value.strip(_WS)
        if text in NULL_TOKENS:
            continue
        counts[text] = counts.get(text, 0) + 1
        if len(counts) > MAX_GROUP_VALUES:
            return False
    if len(counts) < 2:
        return False
    if declared is not None:
        return declared.type == "string"
    classes: dict[str, int] = {}
    for text, count in counts.items():
        cls = classify(text) or "string"
        classes[cls] = classes.get(cls, 0) + count
    if infer_from_counts(classes) != "string":
        return False
    reading = suggest(counts)  # mostly numbers or dates (in any form): measures, not groups
    return reading is None or reading.fits * 2 <= reading.total
