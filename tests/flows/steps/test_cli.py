"""The command line: exit codes, one-line errors without tracebacks, a full run."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.small_fs import require_small_fs, with_small_fs

from .conftest import ROOT, run_cli


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: d / "missing.csv", "does not exist"),
        (lambda d: _write(d / "empty.csv", b""), "is empty"),
        (lambda d: _write(d / "bin.csv", b"a,b\n\x00\x01\x02\n"), "looks binary"),
        (lambda d: _write(d / "latin1.csv", b"a,b\n\xe9t\xe9,1\n"), "is not UTF-8"),
        (lambda d: d, "is not a regular file"),
        (lambda d: _write(d / "dup.csv", b"a,b,a\n1,2,3\n"), "repeats column 1"),
        (lambda d: _write(d / "noname.csv", b"a,,c\n"), "has an empty name"),
    ],
)
def test_ingest_refuses_unusable_files(tmp_path: Path, make_input: object, message: str) -> None:
    path = make_input(tmp_path)  # type: ignore[operator]
    done = run_cli("ingest", "--input", str(path), "--output", str(tmp_path / "out"))
    assert done.returncode == 65
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "ingest.json").exists()


def test_ingest_accepts_a_file_without_copying(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", b"\xef\xbb\xbfa,b\n1,2\n")
    done = run_cli("ingest", "--input", str(src), "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "out" / "ingest.json").read_text())
    assert meta == {"source": str(src), "generated": False, "columns": ["a", "b"], "bytes": 11}
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ingest.json"]


@pytest.mark.parametrize(
    "args",
    [
        ["ingest"],
        ["ingest", "--output", "x", "--rows", "-1"],
        ["bogus"],
        ["transform", "--input", "x", "--output", "y", "--partition", "2", "--partitions", "2"],
    ],
)
def test_bad_usage_exits_64(args: list[str], tmp_path: Path) -> None:
    done = run_cli(*args)
    assert done.returncode == 64, done.stderr
    assert "error:" in done.stderr and "Traceback" not in done.stderr


def test_threads_from_the_environment(tmp_path: Path) -> None:
    done = run_cli(
        "ingest", "--output", str(tmp_path), "--rows", "10", env={"AIOP_DUCKDB_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr
    done = run_cli("ingest", "--output", str(tmp_path), env={"AIOP_DUCKDB_THREADS": "many"})
    assert done.returncode == 64 and "AIOP_DUCKDB_THREADS" in done.stderr


def test_full_run_through_the_cli(tmp_path: Path) -> None:
    def ok(*args: str) -> str:
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    ok("ingest", "--output", str(tmp_path / "i"), "--rows", "3000", "--seed", "3")
    meta = json.loads((tmp_path / "i" / "ingest.json").read_text())
    assert meta["generated"] and meta["rows"] == 3000 and meta["seed"] == 3
    assert meta["source"] == "input.csv"
    out = ok("validate", "--input", str(tmp_path / "i" / "input.csv"),
             "--output", str(tmp_path / "v"), "--partitions", "2")  # fmt: skip
    assert out.startswith("validate: 3000 rows, ")
    for i in range(2):
        ok("transform", "--input-dir", str(tmp_path / "v"), "--output", str(tmp_path / "t" / f"p{i}"),
           "--partition", str(i), "--partitions", "2", "--group-by", "category")  # fmt: skip
    ok("aggregate", "--input-dir", str(tmp_path / "t"), "--group-by", "category",
       "--output", str(tmp_path / "a"))  # fmt: skip
    out = ok("report", "--validate", str(tmp_path / "v"), "--aggregate", str(tmp_path / "a"),
             "--output", str(tmp_path / "r"))  # fmt: skip
    bad = meta["malformed_rows"]
    assert out.startswith(f"report: 3000 rows, {3000 - bad} valid, {bad} quarantined; 4 files ")
    assert not (tmp_path / "r" / "summary.json").exists()  # the flow's, written once


def test_data_errors_of_later_steps(tmp_path: Path) -> None:
    done = run_cli(
        "aggregate",
        "--input-dir",
        str(tmp_path),
        "--group-by",
        "x",
        "--output",
        str(tmp_path / "o"),
    )
    assert done.returncode == 65 and done.stderr.startswith("error: no transform output")
    schema = _write(tmp_path / "s.yaml", b"a: money\n")
    src = _write(tmp_path / "in.csv", b"a\n1\n")
    done = run_cli(
        "validate", "--input", str(src), "--output", str(tmp_path / "v"), "--schema", str(schema)
    )
    assert done.returncode == 65 and len(done.stderr.splitlines()) == 1
    assert f"{schema}:1: unknown type 'money'" in done.stderr


class TestStorageLimits:
    """Issue 21, item 7: a step that meets a full file system or the file size limit says so in
    one line (which file system, how much is free), exit 74; never a DuckDB traceback."""

    def test_a_full_file_system_is_one_line_naming_it(self, tmp_path: Path) -> None:
        require_small_fs()
        small = tmp_path / "small"
        argv = [sys.executable, "-m", "flows.steps", "ingest", "--rows", "300000",
                "--output", str(small / "out")]  # fmt: skip
        done = subprocess.run(
            with_small_fs(argv, small, "2m"), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 74, done.stderr
        assert "Traceback" not in done.stderr and "IOException" not in done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith(f"error: no space left on {small} "), line
        assert str(small / "out") in line and "(2.0 MiB in all)" in line
        assert "it was full when the file reached 1." in line  # MiB: how far DuckDB got

    def test_the_file_size_limit_is_one_line_naming_it(self, tmp_path: Path) -> None:
        argv = [sys.executable, "-m", "flows.steps", "ingest", "--rows", "300000",
                "--output", str(tmp_path / "out")]  # fmt: skip
        done = subprocess.run(
            argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20)),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 74, done.stderr
        assert "Traceback" not in done.stderr and "IOException" not in done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith("error: file size limit reached writing ")
        assert str(tmp_path / "out") in line and "1.0 MiB" in line and "ulimit -f" in line


def test_without_duckdb_a_step_exits_70_saying_to_declare_it(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    # Without the distribution neither of its modules imports: the package nor its extension.
    for module in ("duckdb", "_duckdb"):
        (blocked / f"{module}.py").write_text("raise ImportError('no duckdb in this image')\n")
    done = run_cli(
        "ingest",
        "--rows",
        "3",
        "--seed",
        "1",
        "--output",
        str(tmp_path / "out"),
        env={"PYTHONPATH": f"{blocked}{os.pathsep}{ROOT}"},
    )
    assert done.returncode == 70
    assert done.stderr.splitlines() == [
        "error: duckdb is not installed in this Python; declare its package under the agent's"
        " requirements: (the Dagger runner installs them into the step's image) or install it"
        " where the step runs"
    ]
    assert not (tmp_path / "out").exists()


def test_without_pyyaml_validate_exits_70_naming_it(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "yaml.py").write_text("raise ModuleNotFoundError('no yaml', name='yaml')\n")
    csv = _write(tmp_path / "in.csv", b"id,amount\n1,2.5\n")
    schema = _write(tmp_path / "s.yaml", b"id: integer\n")
    env = {"PYTHONPATH": f"{blocked}{os.pathsep}{ROOT}"}
    args = ["--input", str(csv), "--output", str(tmp_path / "out")]
    done = run_cli("validate", *args, "--schema", str(schema), env=env)
    assert done.returncode == 70
    assert done.stderr.startswith("error: yaml is not installed in this Python; declare its")
    # the other steps never load it
    done = run_cli("ingest", *args, env=env)
    assert done.returncode == 0, done.stderr


def test_steps_that_never_use_duckdb_start_without_importing_it(tmp_path: Path) -> None:
    # ingest of a given file and report run where DuckDB cannot be imported: they never load it,
    # so they do not pay its import at every start.
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for module in ("duckdb", "_duckdb"):
        (blocked / f"{module}.py").write_text("raise ImportError('no duckdb in this image')\n")
    env = {"PYTHONPATH": f"{blocked}{os.pathsep}{ROOT}"}
    csv = _write(tmp_path / "in.csv", b"id,amount\n1,2.5\n")
    done = run_cli("ingest", "--input", str(csv), "--output", str(tmp_path / "ingest"), env=env)
    assert done.returncode == 0, done.stderr
    done = run_cli("validate", "--input", str(csv), "--output", str(tmp_path / "v"), env=env)
    assert done.returncode == 70, done.stderr
