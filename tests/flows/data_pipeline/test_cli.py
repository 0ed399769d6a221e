"""The main job's command line: bad usage and unusable input exit 2 with one paragraph, no traceback."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.data_pipeline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [
        (lambda d: ["--input", str(d / "missing.csv")], "does not exist"),
        (lambda d: ["--input", str(write(d / "empty.csv", b""))], "is empty"),
        (lambda d: ["--input", str(write(d / "bin.csv", b"a,b\n\x00\x01\x02"))], "looks binary"),
        (lambda d: ["--input", str(write(d / "l1.csv", b"a,b\n\xe9t\xe9,1\n"))], "is not UTF-8"),
        (lambda d: ["--input", str(d)], "not a regular file"),
        (lambda d: ["--input", str(write(d / "case.csv", b"id,ID\n1,2\n"))], "case-insensitively"),
        (
            lambda d: ["--input", str(write(d / "pad.csv", b'" grp ",v\nx,1\n'))],
            "leading or trailing",
        ),
        (
            lambda d: ["--input", str(write(d / "nl.csv", b'"a\nb",v\nx,1\n'))],
            "control character",
        ),
        (
            lambda d: [
                "--input",
                str(write(d / "dupq.csv", b'"a,b",a\n1,2\n')),
                "--group-by",
                "a,",
            ],
            "'a,' is not a column",
        ),
        (lambda d: ["--input", str(write(d / "dup.csv", b"a,a\n1,2\n"))], "repeats column 1"),
        (
            lambda d: ["--input", str(write(d / "ok.csv", b"a,b\n1,2\n")), "--group-by", "zzz"],
            "'zzz' is not a column",
        ),
        (lambda d: ["--group-by", "nope"], "not a column of the generated sample"),
        (
            lambda d: [
                "--input",
                str(write(d / "wide.csv", ",".join(f"c{i}" for i in range(100_000)).encode())),
            ],
            "has 100000 columns; the pipeline reads at most 16384",
        ),
        (
            lambda d: ["--input", str(write(d / "two.csv", b"id,a,b\n1,x,p\n2,y,q\n"))],
            "cannot tell which column to group by: 'a', 'b' each have 2 to 50",
        ),
        (
            lambda d: ["--input", str(write(d / "none.csv", b"id,v\n1,2\n2,3\n"))],
            "no text column has 2 to 50 distinct values in the first 2 rows",
        ),
        (
            lambda d: ["--schema", str(write(d / "s.yaml", b"amount: money\n"))],
            "line 1",
        ),
        (
            lambda d: [
                "--input",
                str(write(d / "ok2.csv", b"a,b\n1,2\n")),
                "--schema",
                str(write(d / "s2.yaml", b"c: integer\n")),
            ],
            "column 'c' is not in the input",
        ),
        (lambda d: ["--output", str(write(d / "afile", b"x"))], "is a file"),
        (lambda d: ["--partitions", "0"], "too small"),
        (lambda d: ["--rows", "many"], "not a whole number"),
        (lambda d: ["--backend", "k8s"], "'k8s' is not one of"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph(
    tmp_path: Path, make_args: object, expected: str
) -> None:
    args = make_args(tmp_path)  # type: ignore[operator]
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_schema_that_is_not_a_regular_file_exits_2_at_once(tmp_path: Path, kind: str) -> None:
    """--schema on a FIFO hung forever; on /dev/zero it took 14.8 GB in 15 s."""
    if kind == "fifo":
        schema = tmp_path / "s.yaml"
        os.mkfifo(schema)
    else:
        schema = Path("/dev/zero") if kind == "device" else tmp_path / "folder"
        if kind == "folder":
            schema.mkdir()

    def limit() -> None:  # an unbounded read fails this test instead of the machine
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    done = subprocess.run(
        [sys.executable, "-m", "flows.data_pipeline", "--schema", str(schema)],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False, preexec_fn=limit,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--schema" in done.stderr and "not a regular file" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_refuses_to_replace_a_folder_that_is_not_a_pipeline_result(tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("years of work")
    done = run_cli("--output", str(tmp_path / "precious"), cwd=tmp_path)
    assert done.returncode == 2 and "the platform did not write" in done.stderr
    assert (tmp_path / "precious" / "thesis.tex").exists()


def test_help_names_every_option(tmp_path: Path) -> None:
    done = run_cli("--help", cwd=tmp_path)
    assert done.returncode == 0
    for option in (
        "--input",
        "--rows",
        "--seed",
        "--schema",
        "--partitions",
        "--group-by",
        "--output",
        "--backend",
    ):
        assert option in done.stdout


@pytest.mark.parametrize(
    ("data", "group_by"),
    [
        (b"\xef\xbb\xbfgrp,v\nx,1\n", "grp"),  # a BOM is not part of the first name
        (b'"a,b",c\n1,2\n', "a,b"),  # CSV quoting: one column named a,b
        (b'id,"x""y"\r1,2\r', 'x"y'),  # CR line ends, a doubled quote
        (",".join(f"column_{i:05d}" for i in range(8_000)).encode() + b"\n", "column_07999"),
        (",".join(f"c{i}" for i in range(16_384)).encode() + b"\n", "c16383"),  # the limit
    ],
)
def test_the_header_is_read_by_the_steps_parser(tmp_path: Path, data: bytes, group_by: str) -> None:
    """The CLI accepts what the steps accept; the run stops later, at the unusable --output."""
    src = write(tmp_path / "in.csv", data)
    done = run_cli(
        "--input", str(src), "--group-by", group_by, "--output", str(write(tmp_path / "f", b"x")),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "not a column" not in done.stderr and "--output" in done.stderr


def _as_root_unwritable(tmp_path: Path, name: str) -> Path:
    """A folder this user cannot create: under a read-only folder, or (root writes through
    permission bits) under /sys, which refuses new folders even to root."""
    import os

    if os.geteuid() != 0:
        parent = tmp_path / "ro"
        parent.mkdir(mode=0o555)
        return parent / name
    return Path("/sys") / f"aiop-test-{os.getpid()}" / name


@pytest.mark.parametrize(
    ("variable", "where"),
    [
        ("AIOP_WORK_DIR", "under-a-file"),
        ("AIOP_WORK_DIR", "unwritable"),
        ("AIOP_CACHE_DIR", "under-a-file"),
        ("AIOP_CACHE_DIR", "unwritable"),
    ],
)
def test_an_unusable_work_or_cache_folder_is_found_before_any_flow_run(
    tmp_path: Path, variable: str, where: str
) -> None:
    """Issue 21, item 11: found up front like --output (exit 2), not when the first step
    writes (exit 1, a flow run already created)."""
    import os

    if where == "under-a-file":
        folder = write(tmp_path / "afile", b"x") / "sub"
    else:
        folder = _as_root_unwritable(tmp_path, "sub")
    done = subprocess.run(
        [sys.executable, "-m", "flows.data_pipeline", "--rows", "100", "--backend", "local"],
        cwd=tmp_path, env={**os.environ, variable: str(folder)}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: {variable}={folder} ") and "cannot be" in line, line
    assert "Traceback" not in done.stderr and done.stdout == ""  # no flow run was started
    assert not (tmp_path / "output").exists()


@pytest.mark.parametrize("inside", ["", "data", "work"])
def test_a_work_dir_equal_to_the_output_or_inside_it_is_refused(
    tmp_path: Path, inside: str
) -> None:
    work = tmp_path / "R" / inside if inside else tmp_path / "R"
    done = run_cli("--rows", "100", "--output", "R", "--work-dir", str(work), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: --work-dir {work} ") and "--output R" in line, line
    assert done.stdout == "" and not (tmp_path / "R").exists()
