"""The input limits the platform declares (flows.steps.header): refused above, working at them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from flows.steps import ingest, report, transform, validate
from flows.steps._io import DataError
from flows.steps.header import MAX_COLUMNS

from .conftest import quiet, run_cli


def test_a_file_wider_than_the_limit_is_refused_by_the_steps(tmp_path: Path) -> None:
    src = tmp_path / "wide.csv"
    src.write_text(",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)) + "\n1\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"has {MAX_COLUMNS + 1} columns; the pipeline reads at"):
        ingest.run(tmp_path / "i", src, log=quiet)
    done = run_cli("validate", "--input", str(src), "--output", str(tmp_path / "v"))
    assert done.returncode == 65 and "at most 16384" in done.stderr
    assert not (tmp_path / "v").exists()  # refused before any work


@pytest.mark.slow
def test_every_step_works_at_the_widest_file(tmp_path: Path) -> None:
    """16,384 columns (integers, floats, text) through validate, transform, aggregate, report:
    5,000 columns used to kill aggregate with SIGFPE."""
    width, rows = MAX_COLUMNS, 12
    header = ["g", *(f"c{i}" for i in range(width - 1))]
    kinds = [lambda r, i: str(r * i), lambda r, i: f"{r}.{i % 10}5", lambda r, i: f"t{(r + i) % 4}"]
    lines = [",".join(header)]
    for r in range(rows):
        lines.append(",".join([f"g{r % 3}", *(kinds[i % 3](r, i) for i in range(width - 1))]))
    lines.insert(5, "g9,1")  # a short record, quarantined at line 6
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")

    meta = validate.run(src, tmp_path / "v", log=quiet)
    assert (meta["input_rows"], meta["valid_rows"], meta["quarantined_rows"]) == (rows + 1, rows, 1)
    with (tmp_path / "v" / "quarantine.csv").open(newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh))[1:] == [["6", f"expected {width} fields, found 2", "g9,1"]]
    assert [meta["columns"][f"c{i}"] for i in range(6)] == ["integer", "float", "string"] * 2
    transform.run(tmp_path / "v", tmp_path / "parts" / "p0", 0, 1, "g", log=quiet)
    done = run_cli("aggregate", "--input-dir", str(tmp_path / "parts"), "--group-by", "g",
                   "--output", str(tmp_path / "a"))  # fmt: skip
    assert done.returncode == 0, done.stderr  # a child: a crash there (SIGFPE) fails this test
    report.run(tmp_path / "v", tmp_path / "a", tmp_path / "out")
    with (tmp_path / "out" / "aggregates.csv").open(newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    numeric = sum(1 for t in meta["columns"].values() if t in ("integer", "float"))
    assert len(table[0]) == 2 + 3 * numeric and [r[0] for r in table[1:]] == ["g0", "g1", "g2"]
    g2 = dict(zip(table[0], table[3], strict=True))  # rows 2, 5, 8, 11
    last = (width - 2) // 3 * 3  # the last integer column
    assert meta["columns"][f"c{last}"] == "integer"
    assert (g2[f"c{last}_min"], g2[f"c{last}_max"]) == (str(2 * last), str(11 * last))
    assert json.loads((tmp_path / "a" / "aggregate.json").read_text())["groups"] == 3
