"""The local Prefect server of the default run: used when nothing is configured, never otherwise.

The CLI tests run ``python -m flows.data_pipeline`` as a user would. The one that lets it start a
real background server gives it a fresh ``PREFECT_HOME`` and a free port, and stops it (its whole
process group) whatever happens, so the suite leaves nothing running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.local_server import (
    MODE_VARIABLE,
    PID_FILE,
    STATE_FILE,
    read_state,
    reuse_running,
    start_or_reuse,
    stop,
)

ROOT = Path(__file__).resolve().parents[2]
ANNOUNCEMENT = "Starting a local Prefect server"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestWhenNothingStarts:
    """Each case returns before anything is spawned: no state file appears."""

    def test_a_configured_api_url_is_used_as_it_is(self, tmp_path: Path) -> None:
        env = {"PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": "http://example:4200/api"}
        assert start_or_reuse(env) is None
        assert env["PREFECT_API_URL"] == "http://example:4200/api"
        assert not (tmp_path / STATE_FILE).exists()

    def test_embedded_mode_keeps_prefects_temporary_server(self, tmp_path: Path) -> None:
        env = {"PREFECT_HOME": str(tmp_path)}
        assert start_or_reuse(env, mode="embedded") is None
        assert reuse_running(env, mode="embedded") is None
        assert "PREFECT_API_URL" not in env and not (tmp_path / STATE_FILE).exists()

    def test_an_api_url_in_the_active_profile_counts_as_configured(self, tmp_path: Path) -> None:
        (tmp_path / "profiles.toml").write_text(
            'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://prefect.team:4200/api"\n',
            encoding="utf-8",
        )
        env = {"PREFECT_HOME": str(tmp_path)}
        assert start_or_reuse(env) is None
        assert "PREFECT_API_URL" not in env and not (tmp_path / STATE_FILE).exists()

    def test_an_api_url_in_a_dotenv_file_counts_as_configured(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        Path(".env").write_text("PREFECT_API_URL=http://prefect.team:4200/api\n", encoding="utf-8")
        env = {"PREFECT_HOME": str(tmp_path / "home")}
        assert start_or_reuse(env) is None
        assert not (tmp_path / "home" / STATE_FILE).exists()

    def test_reuse_ignores_a_recorded_server_that_is_gone(self, tmp_path: Path) -> None:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        state = {"api_url": "http://127.0.0.1:9/api", "pid": int(dead.stdout), "log": "x.log"}
        (tmp_path / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
        env = {"PREFECT_HOME": str(tmp_path)}
        assert reuse_running(env) is None and "PREFECT_API_URL" not in env


def _cli(home: Path, tmp_path: Path, run: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != MODE_VARIABLE
    }
    environ.update(PREFECT_HOME=str(home), AIOP_BACKEND="local", **env)
    return subprocess.run(
        [sys.executable, "-m", "flows.data_pipeline", "--rows", "50", "--partitions", "1",
         "--output", str(tmp_path / f"out-{run}"), "--work-dir", str(tmp_path / f"work-{run}")],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.prefect
@pytest.mark.slow
def test_the_cli_with_prefect_api_url_set_never_starts_a_server(
    prefect_api_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "prefect-home"
    done = _cli(home, tmp_path, "a", PREFECT_API_URL=prefect_api_url)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ANNOUNCEMENT not in done.stderr
    assert not (home / STATE_FILE).exists() and not (home / PID_FILE).exists()
    assert f"Flow run:   {prefect_api_url.removesuffix('/api')}" in done.stdout


@pytest.mark.slow
def test_a_default_run_starts_one_server_announces_it_and_the_next_run_reuses_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "prefect-home"
    port = str(_free_port())
    state: dict[str, object] | None = None
    try:
        first = _cli(home, tmp_path, "1", PREFECT_SERVER_API_PORT=port)
        assert first.returncode == 0, first.stderr[-3000:]
        assert ANNOUNCEMENT in first.stderr and f"UI at http://127.0.0.1:{port}" in first.stderr
        assert "prefect server stop" in first.stderr
        assert sum(ANNOUNCEMENT in line for line in first.stderr.splitlines()) == 1
        console = first.stdout + first.stderr
        assert "Traceback" not in console and "| ERROR" not in console
        assert "database is locked" not in console and "Error flushing" not in console
        state = read_state(home)
        assert state is not None and state["api_url"] == f"http://127.0.0.1:{port}/api"
        assert (home / PID_FILE).read_text(encoding="utf-8") == str(state["pid"])
        assert f"Flow run:   http://127.0.0.1:{port}/" in first.stdout

        second = _cli(home, tmp_path, "2", PREFECT_SERVER_API_PORT=port)
        assert second.returncode == 0, second.stderr[-3000:]
        assert ANNOUNCEMENT not in second.stderr
        assert "Traceback" not in second.stderr and "| ERROR" not in second.stderr
        assert read_state(home) == state  # the same server, not a second one
    finally:
        stopped = stop(home)
    assert stopped and state is not None
    assert read_state(home) is None and not (home / PID_FILE).exists()
    assert not _running(int(str(state["pid"])))


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie waiting to be reaped by init."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.split(") ", 1)[1].startswith("Z")
