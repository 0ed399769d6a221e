"""flows.ops.verify's engine check says which of runtime, CLI and engine image is missing.

A script named ``docker`` on PATH stands in for the container runtime (it answers ``info`` and
``image inspect`` like the real one); the CLI is looked for where the SDK keeps it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from adapters.dagger.diagnosis import diagnose_engine
from flows.ops.verify import check_engine

_DOCKER = f"""#!{sys.executable}
import os, sys
if sys.argv[1:2] == ["info"]:
    sys.exit(0 if os.environ.get("FAKE_DOCKER_UP") == "1" else 1)
if sys.argv[1:3] == ["image", "inspect"]:
    if sys.argv[3] in os.environ.get("FAKE_DOCKER_IMAGES", "").split(","):
        print("sha256:abc")
        sys.exit(0)
    print("Error: No such image: " + sys.argv[3], file=sys.stderr)
    sys.exit(1)
sys.exit(2)
"""


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with only a fake docker, an empty SDK cache, no engine settings."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(_DOCKER)
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in (
        "DAGGER_SESSION_PORT",
        "DAGGER_SESSION_TOKEN",
        "_EXPERIMENTAL_DAGGER_CLI_BIN",
        "_EXPERIMENTAL_DAGGER_RUNNER_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _cli(machine: Path) -> None:
    from importlib.metadata import version

    cli = machine / "cache" / "dagger" / f"dagger-{version('dagger-io')}"
    cli.parent.mkdir(parents=True)
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)


def test_a_stopped_runtime_is_named(machine: Path) -> None:
    assert diagnose_engine().missing == ["runtime", "CLI"]


def test_a_running_runtime_without_cli_or_image_names_both(
    machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_UP", "1")
    assert diagnose_engine().missing == ["CLI", "engine image"]
    check = check_engine()
    assert check.status == "WARN"
    assert "missing: CLI, engine image" in check.detail
    assert "registry.dagger.io/engine:v" in check.detail and "dl.dagger.io" in check.fix


def test_only_the_engine_image_missing(machine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_UP", "1")
    _cli(machine)
    assert diagnose_engine().missing == ["engine image"]


def test_everything_present_passes(machine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import version

    monkeypatch.setenv("FAKE_DOCKER_UP", "1")
    monkeypatch.setenv("FAKE_DOCKER_IMAGES", f"registry.dagger.io/engine:v{version('dagger-io')}")
    _cli(machine)
    assert diagnose_engine().missing == []
    assert check_engine().status == "PASS"


def test_a_configured_cli_that_is_not_there_is_named(
    machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_EXPERIMENTAL_DAGGER_CLI_BIN", str(machine / "nope" / "dagger"))
    [cli] = [p for p in diagnose_engine().parts if p.name == "CLI"]
    assert not cli.ok and "_EXPERIMENTAL_DAGGER_CLI_BIN" in cli.detail
