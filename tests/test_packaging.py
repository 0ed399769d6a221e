"""The wheel: the product's packages without the benchmarks, and the ``aiop`` command."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip wheel`` builds from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [built] = out.glob("*.whl")
    return built


def test_the_benchmarks_are_not_in_the_wheel(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if n.startswith("flows/benchmarks/")] == []
    # what it must still hold: the command, the step programs, the agents' definitions
    assert "flows/cli/__init__.py" in names and "flows/steps/__main__.py" in names
    assert "agents/definitions/ingest-duckdb.yaml" in names and "flows/py.typed" in names


def test_the_wheel_installs_the_aiop_command(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        [entry_points] = [
            n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")
        ]
        text = archive.read(entry_points).decode()
    assert "[console_scripts]\naiop = flows.cli:main" in text


def test_aiop_bench_without_the_benchmarks_says_so_in_one_line(wheel: Path, tmp_path: Path) -> None:
    """What a user of the wheel sees: the wheel's files and this environment's libraries, without
    the checkout (``-S``: no ``.pth`` file, so no editable install's finder)."""
    unpacked = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(unpacked)
    libraries = sysconfig.get_paths()["purelib"]
    program = (
        f"import sys; sys.path[:0] = [{str(unpacked)!r}, {libraries!r}]; import flows;"
        f" assert flows.__file__.startswith({str(unpacked)!r}), flows.__file__;"
        " from flows.cli import main; sys.exit(main(['bench', '--quick']))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", program],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: the benchmarks are not installed")
