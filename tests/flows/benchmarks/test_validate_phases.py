"""The validate phases tool measures every phase and leaves the folder of the file it reads as it
found it."""

from __future__ import annotations

from pathlib import Path

from flows.benchmarks.validate_phases import phases


def test_every_phase_is_measured_and_nothing_beside_the_input_is_touched(tmp_path: Path) -> None:
    csv = tmp_path / "orders.csv"
    csv.write_text("id,city,amount\n" + "".join(f"{i},c{i % 3},{i}.5\n" for i in range(200)))
    # A file of the user's with the name the tool once used for its scratch output.
    mine = tmp_path / ".validate-phases.parquet"
    mine.write_bytes(b"the user's bytes")
    before = sorted(p.name for p in tmp_path.iterdir())

    took = phases(csv, repeat=1)

    assert set(took) == {
        "record_scan",
        "sample_classes",
        "typed_pass",
        "valid_parquet",
        "duckdb_typed_read",
    }
    assert all(t["cpu_s"] >= 0 and t["wall_s"] > 0 for t in took.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert mine.read_bytes() == b"the user's bytes"


def test_a_wide_file_typed_in_batches_leaves_the_user_s_files_beside_it(tmp_path: Path) -> None:
    # Past 100 columns the typed pass writes one Parquet file per batch of columns: into a
    # folder of the tool's own, never beside the input, where a file of that name is the user's.
    header = ",".join(f"c{i}" for i in range(150))
    csv = tmp_path / "wide.csv"
    csv.write_text(header + "\n" + "".join(",".join(["1"] * 150) + "\n" for _ in range(20)))
    mine = tmp_path / "staging-0.parquet"
    mine.write_bytes(b"the user's bytes")
    before = sorted(p.name for p in tmp_path.iterdir())

    phases(csv, repeat=1)

    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert mine.read_bytes() == b"the user's bytes"
