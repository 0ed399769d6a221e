"""aggregate: the merged partial statistics, checked against an independent pure-Python
computation from the CSV (csv module, exact integers, ``math.fsum``)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import random
import re
import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.steps import aggregate, transform, validate
from flows.steps._io import DataError

from .conftest import PARTITIONS, Pipeline, query, quiet, run_cli

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


# -- a crafted file: large and negative integers, an all-null group, the null group ------------

BIG = 2**62


def _crafted(path: Path) -> None:
    """A CSV ``g,n,x,s,z``: integers ``n`` up to 2**63-1 in size, floats ``x``, a text column
    ``s`` (never aggregated), integers ``z``; group ``allnull`` has no value in any numeric
    column, the empty group is the null group; ``tie`` and ``above`` have sums of 2**64 plus
    3 * 2**11 (half-way between two doubles: rounds to even) and 2**11 + 1 (just past half-way)."""
    rnd = random.Random(7)
    lines = ["g,n,x,s,z"]
    fixed = [("tie", [BIG] * 4 + [3 * 2**11]), ("above", [BIG] * 4 + [2**11 + 1])]
    rows: list[tuple[str, str, str, str, str]] = []
    for group, values in fixed:
        rows += [(group, str(v), "1.5", "t", "1") for v in values]
    for _ in range(240):
        group = rnd.choice(["a", "b", "c", "", "allnull"])
        if group == "allnull":
            rows.append((group, "", "", "s", ""))
            continue
        n = rnd.choice([rnd.randint(-5, 5), rnd.randint(BIG - 10, 2 * BIG - 1),
                        -rnd.randint(BIG - 10, 2 * BIG - 1), rnd.randint(-10**6, 10**6)])  # fmt: skip
        x = f"{rnd.uniform(-1e6, 1e6):.6f}"
        z = str(rnd.randint(-3, 3))
        rows.append((group, *("" if rnd.random() < 0.1 else v for v in (str(n), x)), "s", z))
    rnd.shuffle(rows)  # the fixed groups' rows end up in several partitions
    lines += [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _expected_text(path: Path) -> list[list[str]]:
    """``aggregates.csv`` of the crafted file grouped by ``g``, computed in Python: integer
    means are ``float(exact sum) / n`` (one rounding of the exact sum, then the division)."""
    kinds = {"n": int, "x": float, "z": int}
    values: dict[str, dict[str, list[int | float]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[str, int] = defaultdict(int)
    with path.open(newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            counts[rec["g"]] += 1
            for col, cast in kinds.items():
                if rec[col] != "":
                    values[rec["g"]][col].append(cast(rec[col]))
    out = [["g", "row_count", *(f"{c}_{s}" for c in kinds for s in ("min", "max", "mean"))]]
    for key in [*sorted(k for k in counts if k), ""]:
        row = [key, str(counts[key])]
        for col, cast in kinds.items():
            vals = values[key][col]
            if not vals:
                row += ["", "", ""]
                continue
            if cast is int:
                mean = float(sum(vals)) / len(vals)
                row += [str(min(vals)), str(max(vals)), repr(mean)]
            else:
                row += [repr(min(vals)), repr(max(vals)), repr(math.fsum(vals) / len(vals))]
        out.append(row)
    return out


def _run_steps(
    src: Path,
    root: Path,
    k: int,
    runs: list[tuple[int, int]],
    by: str = "g",
    schema: Path | None = None,
) -> Path:
    """validate into ``k`` partitions, one transform step per ``(first, count)``, aggregate."""
    validate.run(src, root / "v", schema, partitions=k, log=quiet)
    for j, (first, count) in enumerate(runs):
        transform.run(root / "v", root / "t" / f"p{j}", first, k, by, count=count, log=quiet)
    aggregate.run(root / "t", by, root / "a", log=quiet)
    return root / "a" / "aggregates.csv"


@pytest.mark.parametrize(
    ("k", "runs"),
    [(1, [(0, 1)]), (3, [(0, 1), (1, 1), (2, 1)]), (7, [(i, 1) for i in range(7)]),
     (7, [(0, 3), (3, 1), (4, 3)])],
)  # fmt: skip
def test_the_merge_equals_one_pass_in_python(
    tmp_path: Path, k: int, runs: list[tuple[int, int]]
) -> None:
    src = tmp_path / "in.csv"
    _crafted(src)
    out = _run_steps(src, tmp_path, k, runs)
    with out.open(newline="", encoding="utf-8") as fh:
        got = list(csv.reader(fh))
    want = _expected_text(src)
    assert got[0] == want[0] and [r[0] for r in got] == [r[0] for r in want]
    x_mean = want[0].index("x_mean")
    for row, exp in zip(got[1:], want[1:], strict=True):
        # integers exact (means: DuckDB casts the exact sum to double as Python's float() does)
        assert row[:x_mean] + row[x_mean + 1 :] == exp[:x_mean] + exp[x_mean + 1 :], row[0]
        if exp[x_mean]:
            assert math.isclose(float(row[x_mean]), float(exp[x_mean]), rel_tol=1e-9)
            assert repr(float(row[x_mean])) == row[x_mean]
        else:
            assert row[x_mean] == ""
    by_group = {r[0]: dict(zip(got[0], r, strict=True)) for r in got[1:]}
    assert by_group["allnull"]["row_count"] != "0"
    assert [by_group["allnull"][c] for c in got[0][2:]] == [""] * 9
    # sums past a double's 53 bits, rounded to nearest (ties to even) before the division: a
    # truncating cast would give 2**64 + 2**12 and 2**64
    assert float(by_group["tie"]["n_mean"]) == float(2**64 + 2**13) / 5 != float(2**64 + 2**12) / 5
    assert float(by_group["above"]["n_mean"]) == float(2**64 + 2**12) / 5 != float(2**64) / 5
    assert json.loads((tmp_path / "a" / "aggregate.json").read_text()) == {
        "groups": len(got) - 1, "group_by": "g",
    }  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "aggregate.json", "aggregates.csv",
    ]  # fmt: skip


def test_group_by_a_date_and_empty_stats(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("d,n,x\n2024-01-02,,0.1\n2024-01-01,5,0.2\n,7,0.30000000000000004\n")
    out = _run_steps(src, tmp_path, 2, [(0, 1), (1, 1)], by="d")
    assert out.read_text().splitlines() == [
        "d,row_count,n_min,n_max,n_mean,x_min,x_max,x_mean",
        "2024-01-01,1,5,5,5.0,0.2,0.2,0.2",
        "2024-01-02,1,,,,0.1,0.1,0.1",
        ",1,7,7,7.0,0.30000000000000004,0.30000000000000004,0.30000000000000004",
    ]


def test_group_by_a_boolean(pipeline: Pipeline, tmp_path: Path) -> None:
    for i in range(PARTITIONS):
        transform.run(pipeline.validate, tmp_path / "t" / f"p{i}", i, PARTITIONS, "active",
                      log=quiet)  # fmt: skip
    aggregate.run(tmp_path / "t", "active", tmp_path / "a", log=quiet)
    lines = (tmp_path / "a" / "aggregates.csv").read_text().splitlines()
    assert lines[0].startswith("active,row_count,id_min,")
    assert [ln.split(",")[0] for ln in lines[1:]] == ["false", "true", ""]


def test_an_empty_input_gives_the_header_only(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("g,n\n")
    schema = tmp_path / "schema.yaml"
    schema.write_text("n: integer\n")
    out = _run_steps(src, tmp_path, 3, [(0, 1), (1, 2)], schema=schema)
    assert out.read_text() == "g,row_count,n_min,n_max,n_mean\n"
    assert json.loads((tmp_path / "a" / "aggregate.json").read_text())["groups"] == 0


def test_symlinked_outputs_count_once(pipeline: Pipeline, tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.mkdir()
    for i in range(PARTITIONS):
        (mounts / f"p{i}").symlink_to(pipeline.parts / f"p{i}", target_is_directory=True)
    (mounts / "again").symlink_to(pipeline.parts, target_is_directory=True)
    aggregate.run(mounts, "category", tmp_path / "a", log=quiet)
    got = (tmp_path / "a" / "aggregates.csv").read_bytes()
    assert got == (pipeline.aggregate / "aggregates.csv").read_bytes()


def test_outputs_that_do_not_fit_together(pipeline: Pipeline, tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"grouped by 'category', not 'active'; run them again with --group-by=active",
    ):
        aggregate.run(pipeline.parts, "active", tmp_path / "o", log=quiet)
    with pytest.raises(DataError, match=r"no transform output \(partials.json\) under"):
        aggregate.run(tmp_path, "category", tmp_path / "o", log=quiet)
    with pytest.raises(DataError, match="is not a directory"):
        aggregate.run(tmp_path / "missing", "category", tmp_path / "o", log=quiet)

    two = tmp_path / "two"
    shutil.copytree(pipeline.parts / "p0", two / "p0")
    shutil.copytree(pipeline.parts / "p2", two / "p2")
    with pytest.raises(DataError, match=r"missing: \[1\]; more than once: none"):
        aggregate.run(two, "category", tmp_path / "o", log=quiet)
    shutil.copytree(pipeline.parts / "p1", two / "p1")
    shutil.copytree(pipeline.parts / "p1", two / "p1-again")
    with pytest.raises(DataError, match=r"missing: none; more than once: \[1\]"):
        aggregate.run(two, "category", tmp_path / "o", log=quiet)
    shutil.rmtree(two / "p1-again")

    other = tmp_path / "other"
    other.mkdir()
    (other / "in.csv").write_text("category,n\na,1\n")
    validate.run(other / "in.csv", other / "v", partitions=PARTITIONS, log=quiet)
    transform.run(other / "v", other / "p1", 1, PARTITIONS, "category", log=quiet)
    shutil.rmtree(two / "p1")
    shutil.copytree(other / "p1", two / "p1")
    with pytest.raises(DataError, match="disagree on the group column, the partition count or"):
        aggregate.run(two, "category", tmp_path / "o", log=quiet)

    shutil.rmtree(two / "p1")
    shutil.copytree(pipeline.parts / "p1", two / "p1")
    (two / "p1" / "partial-00000.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="cannot read the partial statistics under"):
        aggregate.run(two, "category", tmp_path / "o", log=quiet)
    (two / "p1" / aggregate.PARTIALS_JSON).write_text('{"partition": 1}')
    with pytest.raises(DataError, match="is not the partial statistics of a transform step"):
        aggregate.run(two, "category", tmp_path / "o", log=quiet)


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, ""), (True, "true"), (1.0, "1.0"), (1e20, "1e+20"), (3, "3"),
     (dt.date(2024, 1, 2), "2024-01-02"), (dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02 03:04:05")],
)  # fmt: skip
def test_render(value: object, text: str) -> None:
    assert aggregate.render(value) == text


def test_columns_in_batches_give_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "in.csv"
    _crafted(src)
    whole = _run_steps(src, tmp_path / "whole", 3, [(0, 1), (1, 2)]).read_bytes()
    monkeypatch.setattr(aggregate, "BATCH_COLUMNS", 2)  # 3 numeric columns: batches of 2 and 1
    batched = _run_steps(src, tmp_path / "batched", 3, [(0, 1), (1, 2)])
    assert batched.read_bytes() == whole
    described = json.loads(
        (tmp_path / "batched" / "t" / "p1" / aggregate.PARTIALS_JSON).read_text()
    )
    assert described["files"] == [
        {"file": "partial-00000.parquet", "measures": [0, 2]},
        {"file": "partial-00001.parquet", "measures": [2, 3]},
    ]
    second = tmp_path / "batched" / "t" / "p1" / "partial-00001.parquet"
    assert [r[0] for r in query(f"DESCRIBE SELECT * FROM '{second}'")] == [
        "g", "row_count", "m2_min", "m2_max", "m2_sum", "m2_n",
    ]  # fmt: skip
    # a re-run with wider batches into the same folders lists only its own file: the earlier
    # second batch file stays (a step deletes nothing it did not write this run) and is not read
    monkeypatch.setattr(aggregate, "BATCH_COLUMNS", 500)
    for folder, (first, count) in (("p0", (0, 1)), ("p1", (1, 2))):
        out = tmp_path / "batched" / "t" / folder
        transform.run(tmp_path / "batched" / "v", out, first, 3, "g", count=count, log=quiet)
        described = json.loads((out / aggregate.PARTIALS_JSON).read_text())
        assert described["files"] == [{"file": "partial-00000.parquet", "measures": [0, 3]}]
    assert second.is_file()
    aggregate.run(tmp_path / "batched" / "t", "g", tmp_path / "again", log=quiet)
    assert (tmp_path / "again" / "aggregates.csv").read_bytes() == whole


def test_5000_numeric_columns_through_both_command_lines(tmp_path: Path) -> None:
    """One GROUP BY over 5,000 columns of min/max/mean killed the step with SIGFPE (exit -8):
    DuckDB dies when a group's aggregate states are wider than its 256 KiB block. Both steps
    work in batches of columns; here with their default width, in child processes."""
    v = tmp_path / "v"
    v.mkdir()
    width = 5_000
    for i, (lo, hi) in enumerate([(0, 4), (4, 7)]):
        # pyarrow writes the 5,001 columns in a blink; DuckDB took 10 s to bind 5,000 expressions
        r = range(lo, hi)
        table = pa.table(
            {
                "g": [f"g{n % 3}" for n in r],
                **{f"c{c}": pa.array([n * c + c for n in r], pa.int64()) for c in range(width)},
                "x": [n * 0.5 for n in r],
            }
        )
        pq.write_table(table, v / transform.part_name(i), compression="zstd")
    columns = {"g": "string", **{f"c{i}": "integer" for i in range(width)}, "x": "float"}
    (v / "validate.json").write_text(json.dumps({"columns": columns, "parts": [4, 3]}))
    # one step over both partitions: a step per partition would only repeat the same work
    done = run_cli("transform", "--input-dir", str(v), "--partition", "0", "--partitions", "2",
                   "--count", "2", "--group-by=g", "--output", str(tmp_path / "t" / "p0"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "t" / "p0").glob("partial-*.parquet"))) == 11  # 5,001 columns
    done = run_cli("aggregate", "--input-dir", str(tmp_path / "t"), "--group-by", "g",
                   "--output", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "aggregate: 1 transform output (2 partitions), 3 groups by 'g', 5001 numeric columns\n"
    )
    with (tmp_path / "out" / "aggregates.csv").open(newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert len(table[0]) == 2 + 3 * (width + 1) and table[0][-3:] == ["x_min", "x_max", "x_mean"]
    assert [r[:2] for r in table[1:]] == [["g0", "3"], ["g1", "2"], ["g2", "2"]]
    g1 = dict(zip(table[0], table[2], strict=True))  # ranges 1 and 4: one in each partition
    assert (g1["c4999_min"], g1["c4999_max"], g1["c4999_mean"]) == ("9998", "24995", "17496.5")
    assert (g1["x_min"], g1["x_max"], g1["x_mean"]) == ("0.5", "2.0", "1.25")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "aggregate.json", "aggregates.csv",
    ]  # fmt: skip


def test_data_errors_on_the_command_line(pipeline: Pipeline, tmp_path: Path) -> None:
    done = run_cli("aggregate", "--input-dir", str(tmp_path), "--group-by", "x",
                   "--output", str(tmp_path / "o"))  # fmt: skip
    assert done.returncode == 65 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"error: no transform output (partials.json) under {tmp_path}; run the transform steps"
        " first"
    ]
    done = run_cli("aggregate", "--input-dir", str(pipeline.parts), "--group-by=active",
                   "--output", str(tmp_path / "o"))  # fmt: skip
    assert done.returncode == 65 and len(done.stderr.splitlines()) == 1
    assert "grouped by 'category', not 'active'" in done.stderr
    done = run_cli("aggregate", "--input-dir", str(pipeline.parts), "--group-by", "category",
                   "--output", str(tmp_path / "o"), "--columns-json", "validate.json")  # fmt: skip
    assert done.returncode == 64  # the option is gone: the types come from the transform steps
