"""The main job's schema file, --partitions and --chaos checks, through the CLI as a subprocess.

Each refusal exits 2 with one paragraph on stderr and no traceback, before any step runs; each
valid YAML schema file the format documents is accepted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.data_pipeline.options import partition_runs, step_slots
from tests.flows.data_pipeline.test_cli import run_cli


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def csv(tmp_path: Path) -> Path:
    return write(tmp_path / "in.csv", b'id,"a:b","c#d",amount\n1,x,y,2.5\n2,z,y,3.5\n')


def assert_refused(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    message = done.stderr
    assert "error: " in message and "\n\n" not in message.strip()
    for text in expected:
        assert text in message, message


class TestSchemaFile:
    def test_non_utf8_is_refused_naming_the_byte(self, tmp_path: Path) -> None:
        schema = write(tmp_path / "s.yaml", b"id: integer\n\xe9t\xe9: string\n")
        done = run_cli("--input", str(csv(tmp_path)), "--schema", str(schema), cwd=tmp_path)
        assert_refused(done, str(schema), "UTF-8", "line 2")

    def test_a_duplicate_key_is_refused_before_any_step(self, tmp_path: Path) -> None:
        schema = write(tmp_path / "s.yaml", b"id: integer\namount: float\nid: string\n")
        done = run_cli("--input", str(csv(tmp_path)), "--schema", str(schema), cwd=tmp_path)
        assert_refused(done, str(schema), "'id'", "line 3", "line 1")

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (b"- id: integer\n", "a list"),
            (b"{id: integer}\n", "flow"),
            (b"id:\n  type: integer\n", "nested"),
            (b"id: &a integer\n", "anchor"),
            (b"1: integer\n", "quote it"),
            (b"id: integer\n  amount: float\n", "indent"),
        ],
    )
    def test_yaml_outside_the_flat_mapping_is_refused_with_the_fix(
        self, tmp_path: Path, text: bytes, expected: str
    ) -> None:
        schema = write(tmp_path / "s.yaml", text)
        done = run_cli("--input", str(csv(tmp_path)), "--schema", str(schema), cwd=tmp_path)
        assert_refused(done, str(schema), expected)

    @pytest.mark.slow
    @pytest.mark.prefect
    def test_valid_yaml_with_document_start_and_quoted_names_runs(
        self, tmp_path: Path, prefect_api_url: str
    ) -> None:
        schema = write(
            tmp_path / "s.yaml",
            b"---\n# types\n\"a:b\": string\n'c#d': string  # quoted\namount: String\n...\n",
        )
        args = [
            "--input", str(csv(tmp_path)), "--schema", str(schema), "--backend", "local",
            "--partitions", "1", "--group-by", "a:b",
            "--output", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"),
        ]  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "flows.data_pipeline", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
        # amount would be inferred as float: the schema's type won.
        assert summary["columns"] == {
            "id": "integer", "a:b": "string", "c#d": "string", "amount": "string"
        }  # fmt: skip


class TestPartitions:
    def test_far_more_partitions_than_a_machine_can_use_is_refused(self, tmp_path: Path) -> None:
        done = run_cli("--partitions", "10000", cwd=tmp_path)
        assert_refused(done, "--partitions", "10000")

    def test_the_bound_is_stated(self, tmp_path: Path) -> None:
        done = run_cli("--partitions", "257", cwd=tmp_path)
        assert_refused(done, "256")


class TestChaos:
    @pytest.mark.parametrize("seconds", ["inf", "nan", "1e9", "-inf"])
    def test_endless_or_absurd_seconds_are_refused(self, tmp_path: Path, seconds: str) -> None:
        done = run_cli("--chaos", f"step=transform,kind=slow,seconds={seconds}", cwd=tmp_path)
        assert_refused(done, "--chaos", "seconds")


class TestParametersReachTheFlowAsGiven:
    """The CLI hands the flow its plain keyword arguments once; the flow fills every default."""

    def test_the_checked_arguments_are_exactly_the_flows_parameters(self, tmp_path: Path) -> None:
        import inspect

        from adapters.settings import Settings
        from flows.cli.run import parse_args
        from flows.data_pipeline.flow import data_pipeline

        given = parse_args(["--rows", "10", "--output", str(tmp_path / "o")], Settings())
        flow_parameters = set(inspect.signature(data_pipeline.fn).parameters) - {"settings"}
        assert set(given) == flow_parameters
        # not given: left to the flow, the one place of the CPU-count default
        assert given["partitions"] is None and given["rows"] == 10

    def test_the_summary_takes_its_counts_from_the_run_not_from_a_file(
        self, tmp_path: Path
    ) -> None:
        from flows.data_pipeline.flow import _summary
        from flows.data_pipeline.options import PipelineOptions

        (tmp_path / "summary.json").write_text('{"input_rows": 999}')  # not read back
        options = PipelineOptions(output=str(tmp_path), work_dir=str(tmp_path), partitions=1)
        facts = {"input_rows": 3, "valid_rows": 2, "quarantined_rows": 1, "columns": ["a"]}
        summary = _summary(options, "local", [], tmp_path, "a", facts)
        assert [summary[k] for k in ("input_rows", "valid_rows", "quarantined_rows")] == [3, 2, 1]
        assert summary["columns"] == ["a"] and summary["data"] == str(tmp_path / "data")


def test_partition_runs_cover_every_partition_once_within_the_slots() -> None:
    for partitions in (1, 2, 3, 8, 63, 64, 256):
        for slots in (None, 1, 2, 3, 8):
            runs = partition_runs(partitions, slots)
            covered = [first + i for first, count in runs for i in range(count)]
            assert covered == list(range(partitions))
            assert len(runs) == (partitions if slots is None else min(partitions, slots))
            counts = [count for _, count in runs]
            assert max(counts) - min(counts) <= 1


def test_step_slots_are_the_cores_locally_and_unbounded_on_dagger() -> None:
    assert step_slots("local") == (os.cpu_count() or 1)
    assert step_slots("dagger") is None
