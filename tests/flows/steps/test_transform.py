"""transform: contiguous partitions that concatenate back to valid.parquet."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import duckdb
import pytest

from flows.steps import transform
from flows.steps._io import DataError, UsageError

from .conftest import PARTITIONS, Pipeline, query, quiet


def test_partitions_concatenate_to_the_input(pipeline: Pipeline) -> None:
    valid = query(f"SELECT * FROM '{pipeline.validate / 'valid.parquet'}'")
    parts = []
    for i in range(PARTITIONS):
        part = pipeline.parts / f"p{i}" / transform.part_name(i)
        rows = query(f"SELECT * FROM '{part}'")
        meta = json.loads((pipeline.parts / f"p{i}" / "transform.json").read_text())
        assert meta == {"partition": i, "rows": len(rows)}
        parts.extend(rows)
    assert parts == valid
    sizes = [
        len(valid) * (i + 1) // PARTITIONS - len(valid) * i // PARTITIONS for i in range(PARTITIONS)
    ]
    assert max(sizes) - min(sizes) <= 1


def test_parts_are_typed_and_zstd(pipeline: Pipeline) -> None:
    part = pipeline.parts / "p0" / "part-00000.parquet"
    codecs = query(f"SELECT DISTINCT compression FROM parquet_metadata('{part}')")
    assert codecs == [("ZSTD",)]
    types = query(f"DESCRIBE SELECT * FROM '{part}'")
    assert [t[1] for t in types][:4] == ["BIGINT", "VARCHAR", "VARCHAR", "DOUBLE"]


@pytest.mark.parametrize(("rows", "k"), [(0, 3), (1, 4), (10, 3), (7, 7), (5, 1)])
def test_bounds_cover_all_rows_once(rows: int, k: int) -> None:
    ranges = [transform.bounds(rows, i, k) for i in range(k)]
    assert ranges[0][0] == 0 and ranges[-1][1] == rows
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


def test_more_partitions_than_rows(pipeline: Pipeline, tmp_path: Path) -> None:
    src = tmp_path / "tiny.parquet"
    duckdb.sql(f"COPY (SELECT * FROM range(2) t(x)) TO '{src}' (FORMAT parquet)")
    counts = [transform.run(src, tmp_path / f"o{i}", i, 5, log=quiet)["rows"] for i in range(5)]
    assert counts == [0, 0, 1, 0, 1]


def test_bad_arguments(tmp_path: Path, pipeline: Pipeline) -> None:
    valid = pipeline.validate / "valid.parquet"
    with pytest.raises(UsageError):
        transform.run(valid, tmp_path, 2, 2, log=quiet)
    with pytest.raises(UsageError):
        transform.run(valid, tmp_path, 0, 0, log=quiet)
    with pytest.raises(DataError, match="not a file"):
        transform.run(tmp_path / "missing.parquet", tmp_path, 0, 1, log=quiet)
    bogus = tmp_path / "bogus.parquet"
    bogus.write_text("not parquet")
    with pytest.raises(DataError, match="not readable Parquet"):
        transform.run(bogus, tmp_path / "o", 0, 1, log=quiet)


def test_a_run_of_partitions_in_one_step_writes_the_same_parts(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    valid = pipeline.validate / "valid.parquet"
    meta = transform.run(valid, tmp_path / "run", 1, 5, count=3, log=quiet)
    singles = [transform.run(valid, tmp_path / f"one{i}", i, 5, log=quiet) for i in (1, 2, 3)]
    assert meta == {
        "partition": 1,
        "rows": sum(s["rows"] for s in singles),
        "count": 3,
        "parts": [{"partition": s["partition"], "rows": s["rows"]} for s in singles],
    }
    assert json.loads((tmp_path / "run" / "transform.json").read_text()) == meta
    for i in (1, 2, 3):
        name = transform.part_name(i)
        assert query(f"SELECT * FROM '{tmp_path / 'run' / name}'") == query(
            f"SELECT * FROM '{tmp_path / f'one{i}' / name}'"
        )
    with pytest.raises(UsageError):
        transform.run(valid, tmp_path / "bad", 3, 5, count=3, log=quiet)
    with pytest.raises(UsageError):
        transform.run(valid, tmp_path / "bad", 3, 5, count=0, log=quiet)
