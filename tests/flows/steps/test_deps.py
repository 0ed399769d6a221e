"""The duckdb bootstrap used in stock python containers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flows.steps import _deps
from flows.steps._environment import read

NOTHING_TOLD = read({})


def test_noop_when_duckdb_is_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    _deps.ensure(NOTHING_TOLD)


def test_exit_70_without_deps_dir(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_deps, "_importable", lambda: False)
    with pytest.raises(SystemExit) as info:
        _deps.ensure(NOTHING_TOLD)
    assert info.value.code == 70
    assert capsys.readouterr().err.startswith("error: duckdb is not installed")


def test_installs_once_per_requirements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    state = {"installed": False}

    def fake_run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append(cmd)
        state["installed"] = True
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(_deps, "_importable", lambda: state["installed"])
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    told = read(
        {"AIOP_STEP_DEPS_DIR": str(tmp_path / "deps"), "AIOP_STEP_REQUIREMENTS": "duckdb==2.0.1"}
    )
    _deps.ensure(told)
    assert len(calls) == 1 and calls[0][:4] == [sys.executable, "-m", "pip", "install"]
    assert calls[0][-3:] == ["--target", str(tmp_path / "deps"), "duckdb==2.0.1"]
    assert sys.path[0] == str(tmp_path / "deps")
    assert len(list((tmp_path / "deps").glob(".installed-*"))) == 1
    state["installed"] = False  # a new process: the marker skips pip, the import still fails
    with pytest.raises(SystemExit) as info:
        _deps.ensure(told)
    assert info.value.code == 70 and len(calls) == 1


def test_failed_pip_exits_70(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_deps, "_importable", lambda: False)
    monkeypatch.setattr(subprocess, "run", lambda cmd, **_: subprocess.CompletedProcess(cmd, 1))
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(SystemExit) as info:
        _deps.ensure(read({"AIOP_STEP_DEPS_DIR": str(tmp_path)}))
    assert info.value.code == 70 and not list(tmp_path.glob(".installed-*"))


def test_a_bad_thread_count_in_the_step_environment_is_refused() -> None:
    assert read({"AIOP_DUCKDB_THREADS": "2"}).duckdb_threads == 2
    with pytest.raises(ValueError, match="AIOP_DUCKDB_THREADS must be a whole number >= 1"):
        read({"AIOP_DUCKDB_THREADS": "0"})
