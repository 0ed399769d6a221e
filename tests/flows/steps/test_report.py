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
    result = report.run(pipeline.validate, pipeline.aggregate, pipeline.parts, out, log=quiet)
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
    report.run(pipeline.validate, pipeline.aggregate, pipeline.parts, out, log=quiet)  # re-run


def test_no_result_file_shares_storage_with_its_source(pipeline: Pipeline, tmp_path: Path) -> None:
    """Issue 21, item 3: a user's edit of one result never reaches another result or the
    step outputs the result was assembled from (they are the cache)."""
    first, second = tmp_path / "out3", tmp_path / "out4"
    for out in (first, second):
        report.run(pipeline.validate, pipeline.aggregate, pipeline.parts, out, log=quiet)
    sources = {
        "aggregates.csv": pipeline.aggregate / "aggregates.csv",
        "quarantine.csv": pipeline.validate / "quarantine.csv",
        **{f"data/part-{i:05d}.parquet": pipeline.parts / f"p{i}" / f"part-{i:05d}.parquet"
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
    report.run(
        pipeline.validate, pipeline.aggregate, pipeline.parts, tmp_path / "o", log=lines.append
    )
    assert lines[-1].endswith(f"{2 + PARTITIONS} files into {tmp_path / 'o'} (copies)") or (
        lines[-1].endswith("(copy-on-write clones)")
    ), lines


def test_part_folders_may_be_symlinks(pipeline: Pipeline, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(PARTITIONS):
        (parts / f"p{i}").symlink_to(pipeline.parts / f"p{i}", target_is_directory=True)
    (parts / "loop").symlink_to(parts, target_is_directory=True)  # visited once, no endless walk
    result = report.run(pipeline.validate, pipeline.aggregate, parts, tmp_path / "o", log=quiet)
    assert len(result["files"]["parts"]) == PARTITIONS


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
    with pytest.raises(DataError, match=r"validate\.json not found"):
        report.run(tmp_path, pipeline.aggregate, pipeline.parts, tmp_path / "o", log=quiet)
    with pytest.raises(DataError, match=r"no \*\.parquet file"):
        report.run(pipeline.validate, pipeline.aggregate, tmp_path, tmp_path / "o", log=quiet)
