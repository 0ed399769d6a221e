"""report: the final folder layout and what the step returns (summary.json is the flow's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.steps import report
from flows.steps._io import DataError

from .conftest import PARTITIONS, Pipeline, quiet


def test_layout_and_summary(pipeline: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "final"
    result = report.run(pipeline.validate, pipeline.aggregate, out, log=quiet)
    parts = [f"part-{i:05d}.parquet" for i in range(PARTITIONS)]
    assert sorted(p.name for p in (out / "data").iterdir()) == parts
    assert sorted(p.name for p in out.iterdir()) == [
        "aggregates.csv",
        "data",
        "quarantine.csv",
    ]
    summary = result
    meta = json.loads((pipeline.validate / "validate.json").read_text())
    assert (
        summary["input_rows"]
        == meta["input_rows"]
        == summary["valid_rows"] + summary["quarantined_rows"]
    )
    assert summary["group_by"] == "category" and summary["columns"] == meta["columns"]
    assert summary["files"] == {
        "aggregates": "aggregates.csv",
        "quarantine": "quarantine.csv",
        "data": "data",
        "parts": [f"data/{p}" for p in parts],
    }
    src = pipeline.aggregate / "aggregates.csv"
    assert (out / "aggregates.csv").read_bytes() == src.read_bytes()
    report.run(pipeline.validate, pipeline.aggregate, out, log=quiet)  # re-run


def test_no_result_file_shares_storage_with_its_source(pipeline: Pipeline, tmp_path: Path) -> None:
    """Issue 21, item 3: a user's edit of one result never reaches another result or the
    step outputs the result was assembled from (they are the cache)."""
    first, second = tmp_path / "out3", tmp_path / "out4"
    for out in (first, second):
        report.run(pipeline.validate, pipeline.aggregate, out, log=quiet)
    sources = {
        "aggregates.csv": pipeline.aggregate / "aggregates.csv",
        "quarantine.csv": pipeline.validate / "quarantine.csv",
        **{f"data/part-{i:05d}.parquet": pipeline.validate / f"part-{i:05d}.parquet"
           for i in range(PARTITIONS)},
    }  # fmt: skip
    before = {rel: src.read_bytes() for rel, src in sources.items()}
    for rel in sources:
        assert (first / rel).stat().st_nlink == 1, rel
        with (first / rel).open("ab") as fh:
            fh.write(b"TOTAL\n")
    assert {rel: src.read_bytes() for rel, src in sources.items()} == before
    assert {rel: (second / rel).read_bytes() for rel in sources} == before


def test_the_step_says_how_it_placed_the_files(pipeline: Pipeline, tmp_path: Path) -> None:
    lines: list[str] = []
    report.run(pipeline.validate, pipeline.aggregate, tmp_path / "o", log=lines.append)
    assert lines[-1].endswith(f"{2 + PARTITIONS} files into {tmp_path / 'o'} (copies)") or (
        lines[-1].endswith("(copy-on-write clones)")
    ), lines


def test_only_the_partitions_validate_counted_are_placed(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """A Parquet file that validate did not count (a stray or an earlier run's) is no result."""
    import shutil

    validated = tmp_path / "v"
    shutil.copytree(pipeline.validate, validated)
    shutil.copyfile(validated / "part-00000.parquet", validated / f"part-{PARTITIONS:05d}.parquet")
    result = report.run(validated, pipeline.aggregate, tmp_path / "o", log=quiet)
    assert result["files"]["parts"] == [f"data/part-{i:05d}.parquet" for i in range(PARTITIONS)]
    assert len(list((tmp_path / "o" / "data").iterdir())) == PARTITIONS


def test_copies_when_the_file_system_cannot_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"x" * 100_000)

    def no_clone(*_: object) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(report, "_clone", no_clone)
    assert report.clone_or_copy(src, tmp_path / "b.txt") == "copy"
    assert (tmp_path / "b.txt").read_bytes() == src.read_bytes()
    assert (tmp_path / "b.txt").stat().st_ino != src.stat().st_ino


def test_missing_inputs(pipeline: Pipeline, tmp_path: Path) -> None:
    import shutil

    with pytest.raises(DataError, match=r"validate\.json not found"):
        report.run(tmp_path, pipeline.aggregate, tmp_path / "o", log=quiet)
    validated = tmp_path / "v"
    shutil.copytree(pipeline.validate, validated)
    (validated / "part-00001.parquet").unlink()
    with pytest.raises(DataError, match=r"part-00001\.parquet not found"):
        report.run(validated, pipeline.aggregate, tmp_path / "o", log=quiet)
    meta = json.loads((validated / "validate.json").read_text())
    del meta["parts"]
    (validated / "validate.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="lists no partitions"):
        report.run(validated, pipeline.aggregate, tmp_path / "o", log=quiet)
