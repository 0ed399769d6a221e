"""What a benchmark hands back, and the terminal table made of it.

Every benchmark module returns a :class:`Outcome`: its raw numbers (``data``, written as they are
to the ``--json`` file) and the table rows that state the claim (:class:`Row`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Outcome", "Row", "format_table", "verdict"]


@dataclass(frozen=True)
class Row:
    """One line of the results table.

    Attributes:
        benchmark: what was measured.
        measured: the measurement, with its unit.
        baseline: what it is compared with, with its unit ("" when nothing).
        comparison: the ratio or the difference to the baseline, as the target states it.
        target: the target as text ("" when the line has none).
        met: whether the target is met; None when there is no target or it was skipped.
    """

    benchmark: str
    measured: str
    baseline: str = ""
    comparison: str = ""
    target: str = ""
    met: bool | None = None


@dataclass
class Outcome:
    """A benchmark's result: raw numbers and table rows."""

    data: dict[str, Any]
    rows: list[Row] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The raw numbers plus the rows, for the ``--json`` file."""
        return {**self.data, "rows": [asdict(r) for r in self.rows]}


def verdict(met: bool | None) -> str:
    """``yes`` / ``NO`` / ``-`` for a row's ``met``."""
    return "-" if met is None else "yes" if met else "NO"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a fixed-width text table with a header line.

    Example:
        >>> print(format_table([Row("x", "1 ms", "2 ms", "0.5x", "<= 1x", True)]))
        benchmark  measured  baseline  ratio/added  target  met?
        ---------  --------  --------  -----------  ------  ----
        x          1 ms      2 ms      0.5x         <= 1x   yes
    """
    header = ("benchmark", "measured", "baseline", "ratio/added", "target", "met?")
    cells = [header] + [
        (r.benchmark, r.measured, r.baseline, r.comparison, r.target, verdict(r.met)) for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    rule = line(["-" * w for w in widths])
    return "\n".join([line(cells[0]), rule, *(line(c) for c in cells[1:])])
