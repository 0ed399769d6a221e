"""The local Prefect server: used only when it is this home's, protected, kept honestly.

The tests that need a real server run ``python -m flows.data_pipeline`` as a user would, each with
a fresh ``PREFECT_HOME`` and a free port, and stop what it started (its whole process group)
whatever happens, so the suite leaves nothing running. The rest check the decisions on records,
processes and stand-in services without starting a server.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flows.server import local_server
from flows.server._state import AUTH_FILE, STATE_FILE, process_start, read_auth, read_state
from flows.server.local_server import PID_FILE, prefect_api, server_environment, stop
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[3]
ANNOUNCEMENT = "Starting a local Prefect server"
#: What a user's shell may hold that the server must never get.
SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-provider-key-3141",
    "REDIS_PASSWORD": "redis-password-2718",
    "PREFECT_API_KEY": "pnu_cloud_key_1618",
}


# -- stand-ins -------------------------------------------------------------------------------


class _AnyService(BaseHTTPRequestHandler):
    """A program that is not this home's Prefect server but answers ``/api/health`` (and every
    other request) with 200, counting what it is sent."""

    received: list[str]

    def do_GET(self) -> None:
        self.received.append(f"GET {self.path}")
        self._ok(b"true")

    def do_POST(self) -> None:
        self.received.append(f"POST {self.path}")
        self._ok(b"{}")

    def _ok(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def other_service() -> Iterator[tuple[int, list[str]]]:
    """A service of someone else on a free port; yields the port and the requests it got."""
    received: list[str] = []
    handler = type("Handler", (_AnyService,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def look_alike() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated live process whose command line looks like a Prefect server's."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "prefect", "server", "start"]
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _user_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's shell: no Prefect or platform settings except ``extra``, a few secrets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "AIOP_")) or k == "AIOP_CACHE_DIR"
    }
    return {
        **env,
        **SECRETS,
        "PREFECT_HOME": str(home),
        "AIOP_BACKEND": "local",
        "AIOP_RETRY_BACKOFF_S": "0.5",  # a platform setting the server must not get either
        **extra,
    }


def _run(
    cmd: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _pipeline(home: Path, tmp_path: Path, run: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _run(
        [sys.executable, "-m", "flows.data_pipeline", "--rows", "50", "--partitions", "1",
         "--output", str(tmp_path / f"out-{run}"), "--work-dir", str(tmp_path / f"work-{run}")],
        _user_env(home, **env),
    )  # fmt: skip


def _gone(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text.rsplit(") ", 1)[1].startswith("Z")


# -- decisions, without a server -------------------------------------------------------------


class TestWhichApi:
    """``prefect_api`` returns before anything is spawned: no record appears."""

    def test_a_configured_api_url_is_used_as_it_is(self, tmp_path: Path) -> None:
        env = {"PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": "http://example:4200/api"}
        api = prefect_api(env, start=True)
        assert (api.url, api.source, api.local) == (
            "http://example:4200/api",
            "PREFECT_API_URL",
            None,
        )
        assert not (tmp_path / STATE_FILE).exists()

    def test_embedded_mode_keeps_prefects_temporary_server(self, tmp_path: Path) -> None:
        env = {"PREFECT_HOME": str(tmp_path)}
        assert prefect_api(env, mode="embedded", start=True).url is None
        assert "PREFECT_API_URL" not in env and not (tmp_path / STATE_FILE).exists()

    def test_an_api_url_in_the_active_profile_counts_as_configured(self, tmp_path: Path) -> None:
        (tmp_path / "profiles.toml").write_text(
            'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://prefect.team:4200/api"\n',
            encoding="utf-8",
        )
        env = {"PREFECT_HOME": str(tmp_path)}
        assert prefect_api(env, start=True).source == "Prefect settings"
        assert "PREFECT_API_URL" not in env and not (tmp_path / STATE_FILE).exists()

    def test_an_api_url_in_a_dotenv_file_counts_as_configured(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        Path(".env").write_text("PREFECT_API_URL=http://prefect.team:4200/api\n", encoding="utf-8")
        env = {"PREFECT_HOME": str(tmp_path / "home")}
        assert prefect_api(env, start=True).source == "Prefect settings"
        assert not (tmp_path / "home" / STATE_FILE).exists()

    def test_without_a_running_server_a_command_gets_none_and_nothing_starts(
        self, tmp_path: Path
    ) -> None:
        env = {"PREFECT_HOME": str(tmp_path)}
        api = prefect_api(env)
        assert (api.url, api.source) == (None, "none") and "PREFECT_API_URL" not in env
        assert api.missing("automations") is not None
        assert "local Prefect server of this PREFECT_HOME is not running" in str(
            api.missing("automations")
        )
        assert not (tmp_path / STATE_FILE).exists()


class TestStaleRecords:
    """A record whose pid now belongs to another program is corrected at once; that program is
    never signalled, by us or by ``prefect server stop``."""

    def _record(self, home: Path, proc: subprocess.Popen[bytes], **fields: Any) -> dict[str, Any]:
        state = {
            "version": 2,
            "server_id": "0123456789abcdef",
            "api_url": f"http://127.0.0.1:{free_port()}/api",
            "docs_url": f"http://127.0.0.1:{free_port()}/",
            "pid": proc.pid,
            "process_start": "another-boot:1",  # not when this pid started: a reused pid
            "log": str(home / "x.log"),
            **fields,
        }
        home.mkdir(parents=True, exist_ok=True)
        (home / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
        read_auth(home, create=True)
        return state

    def test_a_reused_pid_costs_no_wait_and_the_record_is_corrected(
        self,
        tmp_path: Path,
        look_alike: subprocess.Popen[bytes],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        recorded = self._record(tmp_path, look_alike)
        (tmp_path / PID_FILE).write_text(str(look_alike.pid), encoding="utf-8")
        env = {"PREFECT_HOME": str(tmp_path)}
        api = prefect_api(env)  # start=False: nothing is spawned, the decision is all
        assert api.url is None and "PREFECT_API_URL" not in env
        state = read_state(tmp_path)
        assert state is not None and state["server_id"] is None  # corrected
        assert state["api_url"] == recorded["api_url"]  # its address kept for the next server
        assert not (tmp_path / PID_FILE).exists()  # `prefect server stop` cannot signal it now
        assert (
            f"named pid {look_alike.pid}, which is now another program" in capsys.readouterr().err
        )
        assert look_alike.poll() is None

    def test_stop_never_signals_a_pid_it_did_not_start(
        self, tmp_path: Path, look_alike: subprocess.Popen[bytes]
    ) -> None:
        self._record(tmp_path, look_alike)
        assert stop(tmp_path, grace_s=0.5) is False
        time.sleep(0.2)  # a signal, had one been sent, is delivered by now
        assert look_alike.poll() is None

    def test_the_pid_of_the_recorded_process_is_recognised(
        self, tmp_path: Path, look_alike: subprocess.Popen[bytes]
    ) -> None:
        from flows.server._state import is_recorded_process

        started = process_start(look_alike.pid)
        assert started is not None
        assert is_recorded_process({"pid": look_alike.pid, "process_start": started})
        assert not is_recorded_process({"pid": look_alike.pid, "process_start": started + "0"})

    def test_an_older_versions_record_is_replaced_and_its_pid_left_alone(
        self,
        tmp_path: Path,
        look_alike: subprocess.Popen[bytes],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        (tmp_path / STATE_FILE).write_text(
            json.dumps({"api_url": "http://127.0.0.1:4200/api", "pid": look_alike.pid}),
            encoding="utf-8",
        )
        (tmp_path / PID_FILE).write_text(str(look_alike.pid), encoding="utf-8")
        assert prefect_api({"PREFECT_HOME": str(tmp_path)}).url is None
        assert "an older version recorded a local Prefect server" in capsys.readouterr().err
        assert not (tmp_path / PID_FILE).exists() and look_alike.poll() is None


class TestProof:
    def test_a_service_that_answers_everything_is_not_this_homes_server(
        self, tmp_path: Path, other_service: tuple[int, list[str]]
    ) -> None:
        port, received = other_service
        server = local_server.LocalServer(
            api_url=f"http://127.0.0.1:{port}/api",
            docs_url="http://127.0.0.1:1/",
            pid=os.getpid(),
            started=False,
            log=tmp_path / "log",
            home=tmp_path,
            server_id="x",
            auth_string="aiop:secret-of-this-home",
        )
        assert server.answers() is False
        assert not any(r.startswith("POST") for r in received)

    def test_the_server_environment_holds_no_secret_and_no_client_setting(self) -> None:
        env = server_environment(
            {
                **SECRETS,
                "PATH": "/bin",
                "PREFECT_API_URL": "http://elsewhere/api",
                "PREFECT_API_AUTH_STRING": "u:p",
                "PREFECT_SERVER_API_AUTH_STRING": "u:p",
                "PREFECT_SERVER_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:///x.db",
                "LC_ALL": "C.UTF-8",
                "OPENAI_API_KEY": "sk-openai",
            },
            Path("/h"),
            "http://127.0.0.1:4200/api",
        )
        assert set(env) == {
            "PATH", "LC_ALL", "PREFECT_HOME", "PREFECT_SERVER_DATABASE_CONNECTION_URL",
            "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_SERVER_UI_API_URL", "PYTHONUNBUFFERED",
        }  # fmt: skip

    @pytest.mark.parametrize("kind", ["folder", "fifo", "wide open"])
    def test_the_auth_file_is_read_with_care(self, tmp_path: Path, kind: str) -> None:
        path = tmp_path / AUTH_FILE
        if kind == "folder":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path, 0o600)
        else:
            path.write_text("aiop:0123456789abcdefghij\n", encoding="utf-8")
            path.chmod(0o644)
            auth, note = read_auth(tmp_path)
            assert auth == "aiop:0123456789abcdefghij" and note and "now 0600" in note
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            return
        with pytest.raises(ValueError, match="not a regular file"):
            read_auth(tmp_path, create=True)


# -- with a real server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One default run with a fresh home: the local server it started, left running for the
    tests of this module, stopped at the end whatever happened."""
    base = tmp_path_factory.mktemp("local-server")
    home = base / "prefect-home"
    port = free_port()
    try:
        first = _pipeline(home, base, "first", PREFECT_SERVER_API_PORT=str(port))
        state = read_state(home)
        yield {"home": home, "base": base, "port": port, "first": first, "state": state}
    finally:
        stop(home)


@pytest.mark.slow
class TestTheServerARunStarts:
    def test_one_line_announces_it_and_the_next_run_reuses_it(
        self, running: dict[str, Any]
    ) -> None:
        first, home, port = running["first"], running["home"], running["port"]
        assert first.returncode == 0, first.stderr[-3000:]
        lines = [line for line in first.stderr.splitlines() if ANNOUNCEMENT in line]
        assert len(lines) == 1, first.stderr
        assert f"UI at http://127.0.0.1:{port}" in lines[0] and AUTH_FILE in lines[0]
        assert "aiop server stop" in lines[0] and "docs at http://" in lines[0]
        console = first.stdout + first.stderr
        assert "Traceback" not in console and "| ERROR" not in console
        assert f"Flow run:   http://127.0.0.1:{port}/" in first.stdout
        state = running["state"]
        assert state is not None and state["api_url"] == f"http://127.0.0.1:{port}/api"
        assert not (home / PID_FILE).exists()  # Prefect's pid file is never written

        second = _pipeline(home, running["base"], "second", PREFECT_SERVER_API_PORT=str(port))
        assert second.returncode == 0, second.stderr[-3000:]
        assert ANNOUNCEMENT not in second.stderr and "Traceback" not in second.stderr
        assert read_state(home) == state  # the same server, not a second one

    def test_its_process_holds_no_secret_of_the_run_that_started_it(
        self, running: dict[str, Any]
    ) -> None:
        """Before: provider keys and the Redis password stayed in /proc/<pid>/environ."""
        pid = running["state"]["pid"]
        auth = (running["home"] / AUTH_FILE).read_text(encoding="utf-8").strip()
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode("utf-8", "replace")
        for value in (*SECRETS.values(), auth, auth.split(":", 1)[1]):
            assert value not in environ
        names = {entry.split("=", 1)[0] for entry in environ.split("\0") if entry}
        assert not {n for n in names if n.startswith("AIOP_")}
        assert "PREFECT_API_URL" not in names and "PREFECT_SERVER_API_AUTH_STRING" not in names

    def test_its_api_demands_the_auth_string_kept_in_the_home(
        self, running: dict[str, Any]
    ) -> None:
        """Before: any local user read every run's parameters over HTTP."""
        import urllib.error
        import urllib.request

        api = running["state"]["api_url"]
        path = running["home"] / AUTH_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        request = urllib.request.Request(f"{api}/flow_runs/filter", data=b"{}", method="POST")
        request.add_header("Content-Type", "application/json")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        token = base64.b64encode(path.read_text(encoding="utf-8").strip().encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200 and json.load(reply)

    def test_every_command_finds_it(self, running: dict[str, Any]) -> None:
        """Before: agents list showed '-' and said to set PREFECT_API_URL; verify skipped the UI
        check and suggested port 4200 although the server was on another."""
        home, port = running["home"], running["port"]
        env = _user_env(home)
        listing = _run([sys.executable, "-m", "flows.cli", "agents", "list"], env)
        assert listing.returncode == 0, listing.stderr
        row = next(line for line in listing.stdout.splitlines() if line.startswith("ingest-duckdb"))
        assert "ok" in row and "set PREFECT_API_URL" not in listing.stdout, listing.stdout
        verify = _run([sys.executable, "-m", "flows.cli", "verify", "--no-docs"], env)
        api_row = next(
            line for line in verify.stdout.splitlines() if line.startswith("Prefect API")
        )
        ui_row = next(line for line in verify.stdout.splitlines() if line.startswith("Prefect UI"))
        assert " PASS " in api_row and f"127.0.0.1:{port}" in api_row, verify.stdout
        assert " PASS " in ui_row and f"127.0.0.1:{port}" in ui_row, verify.stdout
        assert "4200" not in verify.stdout.replace(str(port), "")
        history = _run([sys.executable, "-m", "flows.cli", "history", "--last", "3"], env)
        assert history.returncode == 0 and "Completed" in history.stdout, history.stderr

    def test_a_client_of_your_own_reaches_it_through_the_env_command(
        self, running: dict[str, Any]
    ) -> None:
        home = running["home"]
        status = _run([sys.executable, "-m", "flows.cli", "server", "status"], _user_env(home))
        assert status.returncode == 0 and f"127.0.0.1:{running['port']}" in status.stdout
        exports = _run([sys.executable, "-m", "flows.cli", "server", "env"], _user_env(home))
        assert exports.returncode == 0, exports.stderr
        client = dict(
            line.removeprefix("export ").split("=", 1) for line in exports.stdout.splitlines()
        )
        assert set(client) == {"PREFECT_API_URL", "PREFECT_API_AUTH_STRING"}
        listed = _run(
            [str(Path(sys.executable).with_name("prefect")), "flow-run", "ls"],
            {
                **_user_env(home / "elsewhere"),
                **{k: v.strip("'") for k, v in client.items()},
                "COLUMNS": "250",
            },
        )
        assert listed.returncode == 0 and "data-pipeline" in listed.stdout, listed.stderr

    def test_its_docs_are_served_beside_it(self, running: dict[str, Any]) -> None:
        import urllib.request

        docs = running["state"]["docs_url"]
        deadline = time.monotonic() + 120  # a guard: the site is built once, in the background
        while True:
            with urllib.request.urlopen(f"{docs}troubleshooting/", timeout=10) as reply:
                if reply.status == 200:
                    page = reply.read().decode()
                    break
            if time.monotonic() > deadline:
                pytest.fail("the docs site was not built in 120 s")
            time.sleep(1)
        assert "<title>" in page and "installation-key" in page
        with urllib.request.urlopen(f"{docs}guides/a-page-that-moved/", timeout=10) as reply:
            assert reply.url == f"{docs}?q=a%20page%20that%20moved" and reply.status == 200


@pytest.mark.slow
def test_a_program_answering_on_the_port_is_never_used(
    tmp_path: Path, other_service: tuple[int, list[str]]
) -> None:
    """Before: whatever answered /api/health on the port got the run (a non-Prefect service
    gave `InvalidVersion: True`)."""
    port, received = other_service
    home = tmp_path / "prefect-home"
    try:
        done = _pipeline(home, tmp_path, "a", PREFECT_SERVER_API_PORT=str(port))
        state = read_state(home)
    finally:
        stop(home)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stderr.splitlines() if ANNOUNCEMENT in line)
    assert f"Port {port} is taken by a program that is not this home's server" in line
    assert state is not None and f":{port}/" not in state["api_url"]
    assert not any(r.startswith("POST") for r in received), received


@pytest.mark.slow
def test_a_reused_pid_in_the_record_costs_no_wait_and_prefect_server_stop_spares_it(
    tmp_path: Path, look_alike: subprocess.Popen[bytes]
) -> None:
    """Before: a record naming a live look-alike made every run wait about 190 s, and the
    server.pid written beside it made `prefect server stop` kill that unrelated process."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    (home / STATE_FILE).write_text(
        json.dumps({"api_url": f"http://127.0.0.1:{free_port()}/api", "pid": look_alike.pid}),
        encoding="utf-8",
    )
    (home / PID_FILE).write_text(str(look_alike.pid), encoding="utf-8")
    try:
        done = _pipeline(home, tmp_path, "a", PREFECT_SERVER_API_PORT=str(free_port()))
        assert done.returncode == 0, done.stderr[-3000:]
        assert ANNOUNCEMENT in done.stderr
        prefect = str(Path(sys.executable).with_name("prefect"))
        _run([prefect, "server", "stop"], _user_env(home), timeout=120)
        assert look_alike.poll() is None  # the unrelated process lives on
    finally:
        stop(home)


@pytest.mark.slow
def test_deleting_the_home_stops_its_server(tmp_path: Path) -> None:
    """Before: the server ran on, unreachable by any stop command (240 MB each)."""
    import shutil

    home = tmp_path / "prefect-home"
    pid = None
    try:
        done = _pipeline(home, tmp_path, "a", PREFECT_SERVER_API_PORT=str(free_port()))
        assert done.returncode == 0, done.stderr[-3000:]
        state = read_state(home)
        assert state is not None
        pid = int(state["pid"])
        shutil.rmtree(home)
        deadline = time.monotonic() + 60  # a guard: it notices within seconds
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _gone(pid), "the server outlived its home"
    finally:
        if pid is not None and not _gone(pid):
            os.killpg(pid, 9)
