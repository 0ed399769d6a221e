"""transform: the partial per-group statistics of validate's partitions, checked against the
rows of the part files themselves."""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flows.steps import aggregate, transform, validate
from flows.steps._io import DataError, UsageError

from .conftest import PARTITIONS, Pipeline, query, quiet, run_cli

#: The numeric columns of the generated sample, in input order, and whether they are integers.
SAMPLE_MEASURES = [("id", True), ("amount", False), ("quantity", True)]


def _partials(folder: Path) -> dict[Any, dict[str, Any]]:
    """The rows of a transform output's partial files (every batch), keyed by group value."""
    meta = json.loads((folder / aggregate.PARTIALS_JSON).read_text())
    rows: dict[Any, dict[str, Any]] = defaultdict(dict)
    for batch in meta["files"]:
        path = folder / batch["file"]
        names = [r[0] for r in query(f"DESCRIBE SELECT * FROM '{path}'")]
        for values in query(f"SELECT * FROM '{path}'"):
            record = dict(zip(names, values, strict=True))
            rows[record["g"]].update(record)
    return dict(rows)


def _expected(rows: list[tuple[Any, ...]], names: list[str], group_by: str) -> dict[Any, Any]:
    """Partial statistics of ``rows`` computed in Python: per group, the row count and per
    numeric column ``(min, max, exact sum or fsum, non-null count)``."""
    g = names.index(group_by)
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        stats = out.setdefault(row[g], {"row_count": 0, "values": defaultdict(list)})
        stats["row_count"] += 1
        for j, (name, _) in enumerate(SAMPLE_MEASURES):
            if (value := row[names.index(name)]) is not None:
                stats["values"][j].append(value)
    return out


def test_the_partials_of_each_partition_are_its_rows_statistics(pipeline: Pipeline) -> None:
    counted = json.loads((pipeline.validate / "validate.json").read_text())["parts"]
    for i in range(PARTITIONS):
        folder = pipeline.parts / f"p{i}"
        part = pipeline.validate / transform.part_name(i)
        names = [r[0] for r in query(f"DESCRIBE SELECT * FROM '{part}'")]
        expected = _expected(query(f"SELECT * FROM '{part}'"), names, "category")
        got = _partials(folder)
        assert set(got) == set(expected)
        for key, want in expected.items():
            row = got[key]
            assert row["row_count"] == want["row_count"]
            for j, (_, is_int) in enumerate(SAMPLE_MEASURES):
                values = want["values"][j]
                assert row[f"m{j}_n"] == len(values)
                assert (row[f"m{j}_min"], row[f"m{j}_max"]) == (min(values), max(values))
                if is_int:
                    assert row[f"m{j}_sum"] == Decimal(sum(values))
                else:
                    assert math.isclose(row[f"m{j}_sum"], math.fsum(values), rel_tol=1e-12)
        meta = json.loads((folder / "transform.json").read_text())
        assert meta == {"partition": i, "rows": counted[i], "groups": len(expected)}
        assert json.loads((folder / aggregate.PARTIALS_JSON).read_text()) == {
            "partition": i,
            "count": 1,
            "partitions": PARTITIONS,
            "group_by": "category",
            "measures": [["id", "integer"], ["amount", "float"], ["quantity", "integer"]],
            "files": [{"file": "partial-00000.parquet", "measures": [0, 3]}],
        }
        assert sorted(p.name for p in folder.iterdir()) == [
            "partial-00000.parquet", "partials.json", "transform.json",
        ]  # fmt: skip


def test_partial_files_are_typed_losslessly_and_zstd(pipeline: Pipeline) -> None:
    partial = pipeline.parts / "p0" / "partial-00000.parquet"
    assert query(f"SELECT DISTINCT compression FROM parquet_metadata('{partial}')") == [("ZSTD",)]
    types = {r[0]: r[1] for r in query(f"DESCRIBE SELECT * FROM '{partial}'")}
    assert types == {
        "g": "VARCHAR", "row_count": "BIGINT",
        "m0_min": "BIGINT", "m0_max": "BIGINT", "m0_sum": "DECIMAL(38,0)", "m0_n": "BIGINT",
        "m1_min": "DOUBLE", "m1_max": "DOUBLE", "m1_sum": "DOUBLE", "m1_n": "BIGINT",
        "m2_min": "BIGINT", "m2_max": "BIGINT", "m2_sum": "DECIMAL(38,0)", "m2_n": "BIGINT",
    }  # fmt: skip


def test_integer_sums_past_the_doubles_are_exact(tmp_path: Path) -> None:
    """DuckDB writes a HUGEINT (an integer sum) to Parquet as DOUBLE; the partial keeps it as
    DECIMAL(38,0), so a sum past 2**63 (and past a double's 53 bits) stays exact."""
    big = [2**62 - 1, 2**62 - 1, 2**62 + 1, 2**63 - 1, -(2**63) + 1, -(2**62) - 3]
    src = tmp_path / "in.csv"
    src.write_text("g,n\n" + "".join(f"a,{v}\n" for v in big[:3]) + f"b,{big[3]}\nb,{big[4]}\n"
                   f"b,{big[5]}\n")  # fmt: skip
    validate.run(src, tmp_path / "v", log=quiet)
    assert query(f"SELECT typeof(sum(n)) FROM '{tmp_path / 'v' / 'part-00000.parquet'}'") == [
        ("HUGEINT",)
    ]
    transform.run(tmp_path / "v", tmp_path / "t", 0, 1, "g", log=quiet)
    got = _partials(tmp_path / "t")
    assert got["a"]["m0_sum"] == Decimal(sum(big[:3])) == Decimal(3 * 2**62 - 1)
    assert float(3 * 2**62 - 1) == float(3 * 2**62)  # a double would have lost the -1
    assert got["b"]["m0_sum"] == Decimal(sum(big[3:]))
    assert (got["b"]["m0_min"], got["b"]["m0_max"]) == (-(2**63) + 1, 2**63 - 1)


@pytest.mark.parametrize(("rows", "k"), [(0, 3), (1, 4), (10, 3), (7, 7), (5, 1)])
def test_bounds_cover_all_rows_once(rows: int, k: int) -> None:
    ranges = [transform.bounds(rows, i, k) for i in range(k)]
    assert ranges[0][0] == 0 and ranges[-1][1] == rows
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


def test_an_empty_partition_has_no_groups(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("g,n,x\na,1,0.5\nb,2,1.5\n")
    counted = validate.run(src, tmp_path / "v", partitions=5, log=quiet)["parts"]
    metas = [
        transform.run(tmp_path / "v", tmp_path / "t" / f"p{i}", i, 5, "g", log=quiet)
        for i in range(5)
    ]
    assert [m["rows"] for m in metas] == counted == [0, 0, 1, 0, 1]
    assert [m["groups"] for m in metas] == [0, 0, 1, 0, 1]
    assert _partials(tmp_path / "t" / "p0") == {}
    partial = tmp_path / "t" / "p0" / "partial-00000.parquet"
    assert [r[0] for r in query(f"DESCRIBE SELECT * FROM '{partial}'")] == [
        "g", "row_count", "m0_min", "m0_max", "m0_sum", "m0_n",
        "m1_min", "m1_max", "m1_sum", "m1_n",
    ]  # fmt: skip


def test_a_run_of_partitions_in_one_step(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("g,n\n" + "".join(f"g{i % 3},{i}\n" for i in range(20)))
    validate.run(src, tmp_path / "v", partitions=5, log=quiet)
    meta = transform.run(tmp_path / "v", tmp_path / "run", 1, 5, "g", count=3, log=quiet)
    singles = [
        transform.run(tmp_path / "v", tmp_path / f"one{i}", i, 5, "g", log=quiet) for i in (1, 2, 3)
    ]
    assert meta == {
        "partition": 1,
        "rows": sum(s["rows"] for s in singles),
        "groups": 3,
        "count": 3,
        "parts": [{"partition": s["partition"], "rows": s["rows"]} for s in singles],
    }
    assert json.loads((tmp_path / "run" / "transform.json").read_text()) == meta
    described = json.loads((tmp_path / "run" / aggregate.PARTIALS_JSON).read_text())
    assert (described["partition"], described["count"], described["partitions"]) == (1, 3, 5)
    got = _partials(tmp_path / "run")
    values = {f"g{k}": [i for i in range(4, 16) if i % 3 == k] for k in range(3)}  # rows 4..15
    assert {key: (r["row_count"], r["m0_min"], r["m0_max"], r["m0_sum"], r["m0_n"])
            for key, r in got.items()} == {
        key: (len(v), min(v), max(v), Decimal(sum(v)), len(v)) for key, v in values.items()
    }  # fmt: skip
    with pytest.raises(UsageError):
        transform.run(tmp_path / "v", tmp_path / "bad", 3, 5, "g", count=3, log=quiet)
    with pytest.raises(UsageError):
        transform.run(tmp_path / "v", tmp_path / "bad", 3, 5, "g", count=0, log=quiet)


def test_a_file_the_step_did_not_list_is_left_alone(tmp_path: Path) -> None:
    """Only the files this run lists are the step's: another ``partial-*.parquet`` in the output
    folder (a user's, or an earlier run's) is neither deleted nor read by the merge."""
    src = tmp_path / "in.csv"
    src.write_text("g,n\n" + "".join(f"g{i % 3},{i}\n" for i in range(20)))
    validate.run(src, tmp_path / "v", partitions=1, log=quiet)
    out = tmp_path / "t" / "p0"
    out.mkdir(parents=True)
    theirs = out / "partial-00009.parquet"
    theirs.write_bytes(b"not the step's")
    transform.run(tmp_path / "v", out, 0, 1, "g", log=quiet)
    assert theirs.read_bytes() == b"not the step's"
    result = aggregate.run(tmp_path / "t", "g", tmp_path / "a", log=quiet)
    assert result["groups"] == 3


def test_columns_named_like_the_partial_columns_do_not_collide(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("row_count,g,m0_sum,file_row_number\nb,1,10,0.5\na,2,20,1.5\nb,3,30,\n")
    validate.run(src, tmp_path / "v", partitions=2, log=quiet)
    for i in range(2):
        transform.run(tmp_path / "v", tmp_path / "t" / f"p{i}", i, 2, "row_count", log=quiet)
    aggregate.run(tmp_path / "t", "row_count", tmp_path / "a", log=quiet)
    assert (tmp_path / "a" / "aggregates.csv").read_text().splitlines() == [
        "row_count,row_count,g_min,g_max,g_mean,m0_sum_min,m0_sum_max,m0_sum_mean,"
        "file_row_number_min,file_row_number_max,file_row_number_mean",
        "a,1,2,2,2.0,20,20,20.0,1.5,1.5,1.5",
        "b,2,1,3,2.0,10,30,20.0,0.5,0.5,0.5",
    ]


def test_bad_arguments_and_inputs(pipeline: Pipeline, tmp_path: Path) -> None:
    v = pipeline.validate
    with pytest.raises(UsageError):
        transform.run(v, tmp_path, PARTITIONS, PARTITIONS, "category", log=quiet)
    with pytest.raises(UsageError):
        transform.run(v, tmp_path, 0, 0, "category", log=quiet)
    with pytest.raises(DataError, match="is not a directory"):
        transform.run(v / "validate.json", tmp_path / "o", 0, PARTITIONS, "category", log=quiet)
    with pytest.raises(DataError, match=r"validate\.json not found"):
        transform.run(tmp_path, tmp_path / "o", 0, PARTITIONS, "category", log=quiet)
    with pytest.raises(
        DataError,
        match=rf"holds {PARTITIONS} partitions \(its validate.json\), not 4; run validate again"
        r" with --partitions 4, or pass --partitions 3",
    ):
        transform.run(v, tmp_path / "o", 0, 4, "category", log=quiet)
    with pytest.raises(
        DataError, match=r"group-by column 'nope' not found in the part files of .*; available"
        r" columns: id, customer, category, amount, "
    ):  # fmt: skip
        transform.run(v, tmp_path / "o", 0, PARTITIONS, "nope", log=quiet)


def test_missing_stale_or_broken_part_files(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("g,n\na,1\nb,2\nc,3\n")
    validate.run(src, tmp_path / "v", partitions=3, log=quiet)
    (tmp_path / "v" / "part-00001.parquet").unlink()
    with pytest.raises(DataError, match=r"lacks part-00001\.parquet of the 3 partitions"):
        transform.run(tmp_path / "v", tmp_path / "o", 0, 3, "g", count=2, log=quiet)
    (tmp_path / "v" / "part-00001.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="are not readable Parquet"):
        transform.run(tmp_path / "v", tmp_path / "o", 1, 3, "g", log=quiet)
    stale = tmp_path / "v" / "part-00002.parquet"
    query(f"COPY (SELECT 'x' AS g, 1 AS n FROM range(2)) TO '{stale}' (FORMAT parquet)")
    with pytest.raises(DataError, match=r"holds 2 rows, its validate\.json says 1"):
        transform.run(tmp_path / "v", tmp_path / "o", 2, 3, "g", log=quiet)
    meta = json.loads((tmp_path / "v" / "validate.json").read_text())
    del meta["parts"]
    (tmp_path / "v" / "validate.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"lists no partitions \('parts'\)"):
        transform.run(tmp_path / "v", tmp_path / "o", 0, 3, "g", log=quiet)


def test_the_command_line(pipeline: Pipeline, tmp_path: Path) -> None:
    done = run_cli("transform", "--input-dir", str(pipeline.validate), "--partition", "1",
                   "--partitions", str(PARTITIONS), "--group-by=category",
                   "--output", str(tmp_path / "t"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads((pipeline.validate / "validate.json").read_text())["parts"]
    meta = json.loads((tmp_path / "t" / "transform.json").read_text())
    assert done.stdout == (
        f"transform: partition 1 of {PARTITIONS}: rows [{rows[0]}, {rows[0] + rows[1]})"
        f" = {rows[1]}, {meta['groups']} groups by 'category', 3 numeric columns\n"
    )
    assert _partials(tmp_path / "t") == _partials(pipeline.parts / "p1")
    done = run_cli("transform", "--input-dir", str(pipeline.validate), "--partition", "0",
                   "--partitions", "2", "--group-by", "category",
                   "--output", str(tmp_path / "o"))  # fmt: skip
    assert done.returncode == 65 and "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ") and "run validate again with --partitions 2" in line
    done = run_cli("transform", "--input-dir", str(pipeline.validate), "--partition", "3",
                   "--partitions", "3", "--group-by", "category", "--output", str(tmp_path / "o"))  # fmt: skip
    assert done.returncode == 64 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "error: --partition must be in [0, 3) and --partitions >= 1"
    ]
