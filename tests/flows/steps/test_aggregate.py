"""aggregate: checked against an independent pure-Python computation (csv module)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest

from flows.steps import aggregate
from flows.steps._io import DataError

from .conftest import Pipeline, quiet, run_cli

NULLS = {"", "NA", "N/A", "null", "NULL", "None"}
NUMERIC = {"id": int, "amount": float, "quantity": int}


def _independent(csv_path: Path) -> dict[str, dict[str, object]]:
    """Valid rows of the generated sample, re-derived with the csv module, grouped by category."""
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[str, int] = defaultdict(int)
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        for row in reader:
            if len(row) != len(header):
                continue
            rec = dict(zip(header, row, strict=True))
            amount, signup = rec["amount"].strip(), rec["signup_date"].strip()
            if amount not in NULLS and not re.fullmatch(r"-?\d+(\.\d+)?", amount):
                continue
            if signup not in NULLS:
                try:
                    dt.date.fromisoformat(signup)
                except ValueError:
                    continue
            key = "" if rec["category"].strip() in NULLS else rec["category"]
            counts[key] += 1
            for col, cast in NUMERIC.items():
                if rec[col].strip() not in NULLS:
                    groups[key][col].append(cast(rec[col]))
    out: dict[str, dict[str, object]] = {}
    for key, n in counts.items():
        stats: dict[str, object] = {"row_count": n}
        for col in NUMERIC:
            vals = groups[key][col]
            stats[f"{col}_min"] = min(vals) if vals else None
            stats[f"{col}_max"] = max(vals) if vals else None
            stats[f"{col}_mean"] = (math.fsum(vals) / len(vals)) if vals else None
        out[key] = stats
    return out


def test_aggregates_match_an_independent_computation(pipeline: Pipeline) -> None:
    expected = _independent(pipeline.csv)
    with (pipeline.aggregate / "aggregates.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == [
            "category", "row_count", "id_min", "id_max", "id_mean", "amount_min", "amount_max",
            "amount_mean", "quantity_min", "quantity_max", "quantity_mean",
        ]  # fmt: skip
        rows = list(reader)
    keys = [r["category"] for r in rows]
    assert keys == [*sorted(k for k in keys if k), ""]  # ascending, null group last
    assert set(keys) == set(expected)
    for row in rows:
        exp = expected[row["category"]]
        assert int(row["row_count"]) == exp["row_count"]
        for col, cast in NUMERIC.items():
            assert cast(row[f"{col}_min"]) == exp[f"{col}_min"]
            assert cast(row[f"{col}_max"]) == exp[f"{col}_max"]
            mean, want = float(row[f"{col}_mean"]), exp[f"{col}_mean"]
            assert isinstance(want, float)
            assert math.isclose(mean, want, rel_tol=1e-9)
            assert repr(mean) == row[f"{col}_mean"]  # the documented float format
    meta = json.loads((pipeline.aggregate / "aggregate.json").read_text())
    assert meta == {"groups": len(rows), "group_by": "category"}
    total = sum(int(r["row_count"]) for r in rows)
    valid = json.loads((pipeline.validate / "validate.json").read_text())["valid_rows"]
    assert total == valid


def test_without_columns_json_uses_parquet_types(pipeline: Pipeline, tmp_path: Path) -> None:
    aggregate.run(pipeline.parts, "active", tmp_path, log=quiet)
    lines = (tmp_path / "aggregates.csv").read_text().splitlines()
    assert lines[0].startswith("active,row_count,id_min,")
    assert [ln.split(",")[0] for ln in lines[1:]] == ["false", "true", ""]


def test_group_by_a_date_and_empty_stats(tmp_path: Path) -> None:
    parts = tmp_path / "parts" / "p0"
    parts.mkdir(parents=True)
    duckdb.sql(
        "COPY (SELECT * FROM (VALUES (DATE '2024-01-02', NULL::BIGINT, 0.1),"
        " (DATE '2024-01-01', 5, 0.2), (NULL, 7, 0.30000000000000004))"
        f" t(d, n, x)) TO '{parts / 'part-00000.parquet'}' (FORMAT parquet)"
    )
    aggregate.run(tmp_path / "parts", "d", tmp_path / "out", log=quiet)
    assert (tmp_path / "out" / "aggregates.csv").read_text().splitlines() == [
        "d,row_count,n_min,n_max,n_mean,x_min,x_max,x_mean",
        "2024-01-01,1,5,5,5.0,0.2,0.2,0.2",
        "2024-01-02,1,,,,0.1,0.1,0.1",
        ",1,7,7,7.0,0.30000000000000004,0.30000000000000004,0.30000000000000004",
    ]


def test_missing_group_column_and_missing_parts(pipeline: Pipeline, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"group-by column 'nope' not found.*available columns: id"):
        aggregate.run(pipeline.parts, "nope", tmp_path, log=quiet)
    with pytest.raises(DataError, match=r"no \*\.parquet file"):
        aggregate.run(tmp_path, "x", tmp_path / "o", log=quiet)


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, ""), (True, "true"), (1.0, "1.0"), (1e20, "1e+20"), (3, "3"),
     (dt.date(2024, 1, 2), "2024-01-02"), (dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02 03:04:05")],
)  # fmt: skip
def test_render(value: object, text: str) -> None:
    assert aggregate.render(value) == text


def test_a_file_with_5000_numeric_columns_is_aggregated(tmp_path: Path) -> None:
    """One GROUP BY over 5,000 columns of min/max/mean killed the step with SIGFPE (exit -8):
    DuckDB dies when a group's aggregate states are wider than its 256 KiB block."""
    parts = tmp_path / "parts" / "p0"
    parts.mkdir(parents=True)
    width = 5_000
    cols = ", ".join(f"range * {i} + {i} AS c{i}" for i in range(width))
    duckdb.sql(
        f"COPY (SELECT 'g' || (range % 3) AS g, {cols}, range * 0.5 AS x FROM range(7))"
        f" TO '{parts / 'part-00000.parquet'}' (FORMAT parquet)"
    )
    done = run_cli("aggregate", "--input-dir", str(tmp_path / "parts"), "--group-by", "g",
                   "--output", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    with (tmp_path / "out" / "aggregates.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len(rows[0]) == 2 + 3 * (width + 1) and rows[0][-3:] == ["x_min", "x_max", "x_mean"]
    assert [r[:2] for r in rows[1:]] == [["g0", "3"], ["g1", "2"], ["g2", "2"]]
    g1 = dict(zip(rows[0], rows[2], strict=True))  # ranges 1 and 4
    assert (g1["c4999_min"], g1["c4999_max"], g1["c4999_mean"]) == ("9998", "24995", "17496.5")
    assert (g1["x_min"], g1["x_max"], g1["x_mean"]) == ("0.5", "2.0", "1.25")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "aggregate.json", "aggregates.csv",
    ]  # fmt: skip
