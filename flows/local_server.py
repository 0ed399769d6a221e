"""The local Prefect server that runs without ``PREFECT_API_URL`` use, kept between runs.

Without ``PREFECT_API_URL``, Prefect would start a temporary server inside every run (10-20 s, and
nothing to browse afterwards). Instead, the main job uses one local server that outlives the run
(adr/0016-default-run-prefect-server.md):

* **reused**: ``$PREFECT_HOME/aiop-local-server.json`` records the server this module started
  (API URL, pid, log); a run finds it there and uses it at once;
* **started on first use**, announced in one line with its UI address and how to stop it:
  ``prefect server start`` on 127.0.0.1 (port ``PREFECT_SERVER_API_PORT``, default 4200, or a free
  one when that is taken), detached, logging to ``$PREFECT_HOME/aiop-local-server.log``, its pid
  also in Prefect's own ``$PREFECT_HOME/server.pid`` so that ``prefect server stop`` stops it;
* **an existing server is used as it is**: a Prefect API already answering on that port (say, a
  ``prefect server start`` in another terminal) is used and nothing is started;
* **never** when a Prefect API is configured (``PREFECT_API_URL`` in the environment or in the
  Prefect profile), nor when ``AIOP_PREFECT_SERVER=embedded`` asks for Prefect's temporary
  per-run server (the test suite sets that).

The server shares ``$PREFECT_HOME``'s database with Prefect's temporary server, so runs made either
way stay in one history. Two runs starting at once start one server (a lock file serialises the
decision). When the server cannot start, the run falls back to the temporary server and says so.

Examples:
    >>> server = start_or_reuse(environ={"PREFECT_API_URL": "http://127.0.0.1:4200/api"})
    >>> server is None  # a configured API is always used as it is
    True
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from adapters.settings import variable_name

__all__ = [
    "MODE_VARIABLE",
    "STATE_FILE",
    "LocalServer",
    "prefect_home",
    "read_state",
    "reuse_running",
    "start_or_reuse",
    "stop",
]

#: ``background`` (default): use or start the local server; ``embedded``: Prefect's temporary one.
MODE_VARIABLE = variable_name("prefect_server")
STATE_FILE = "aiop-local-server.json"
LOG_FILE = "aiop-local-server.log"
PID_FILE = "server.pid"  # Prefect's own (`prefect server start --background` / `stop`)
_LOCK_FILE = "aiop-local-server.lock"
_DEFAULT_PORT = 4200
_READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class LocalServer:
    """The local server a run uses.

    Attributes:
        api_url: its API URL (set as ``PREFECT_API_URL`` for this process).
        pid: its process id (None for a server this module did not start).
        started: True when this call started it (it still has to come up).
        log: where its output goes (None for a server this module did not start).
    """

    api_url: str
    pid: int | None
    started: bool
    log: Path | None = None

    @property
    def ui_url(self) -> str:
        """Its UI address (the API URL without ``/api``)."""
        return self.api_url.removesuffix("/api")

    def wait_ready(self, timeout_s: float = _READY_TIMEOUT_S) -> bool:
        """Wait until it answers ``/api/health``; False when it exited or did not answer in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _healthy(self.api_url, timeout_s=2.0):
                return True
            if self.pid is not None and not _alive(self.pid):
                return False
            time.sleep(0.1)
        return False


def prefect_home(environ: MutableMapping[str, str] | None = None) -> Path:
    """``PREFECT_HOME`` (default ``~/.prefect``), with ``~`` expanded."""
    env = os.environ if environ is None else environ
    return Path(env.get("PREFECT_HOME") or "~/.prefect").expanduser()


def read_state(home: Path) -> dict[str, object] | None:
    """What ``home``'s state file says about the server started there (None: nothing)."""
    try:
        data = json.loads((home / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def start_or_reuse(
    environ: MutableMapping[str, str] | None = None,
    *,
    notice: IO[str] | None = None,
    mode: str = "background",
) -> LocalServer | None:
    """Point this process at the local server, starting it if none runs; don't wait for it.

    Sets ``PREFECT_API_URL`` in ``environ`` (default ``os.environ``). Call it before importing
    Prefect, so that the server starts while the caller imports; then run the flow with
    :func:`flows.console.run_flow_quietly` (``server=``), which waits for it.

    Args:
        environ: the environment to read and update.
        notice: where the one-line announcement of a started server goes (default stderr).
        mode: the ``prefect_server`` setting: ``background`` or ``embedded`` (start nothing).

    Returns:
        The server, or None when a Prefect API is configured or ``mode`` is ``embedded``.
    """
    env = os.environ if environ is None else environ
    if mode == "embedded" or env.get("PREFECT_API_URL"):
        return None
    if _may_be_configured(env) and (env is not os.environ or _configured_api_url()):
        return None  # a mapping other than os.environ cannot be checked by Prefect: assume so
    home = prefect_home(env)
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / _LOCK_FILE):
        server = _recorded(home) or _answering(env) or _spawn(home, env)
    env["PREFECT_API_URL"] = server.api_url
    if server.started:
        print(
            f"Starting a local Prefect server for this and later runs (no PREFECT_API_URL is set):"
            f" UI at {server.ui_url}, log in {server.log}. It keeps running after this run; stop"
            f" it with `prefect server stop` (set {MODE_VARIABLE}=embedded for a temporary server"
            " per run instead).",
            file=notice or sys.stderr,
            flush=True,
        )
    return server


def reuse_running(
    environ: MutableMapping[str, str] | None = None, *, mode: str = "background"
) -> str | None:
    """Point this process at the local server if one is up; never start one.

    For the commands that only read or briefly use Prefect (history, drills, agents): with the
    local server running they use it instead of starting Prefect's temporary server on the same
    database. Sets and returns ``PREFECT_API_URL``; None when nothing was changed.
    """
    env = os.environ if environ is None else environ
    if mode == "embedded" or env.get("PREFECT_API_URL") or _may_be_configured(env):
        return None
    server = _recorded(prefect_home(env))
    if server is None or not _healthy(server.api_url, timeout_s=1.0):
        return None
    env["PREFECT_API_URL"] = server.api_url
    return server.api_url


def stop(home: Path, grace_s: float = 10.0) -> bool:
    """Stop the server started under ``home`` (its process group), if it runs; True if it did."""
    state = read_state(home)
    pid = state.get("pid") if state else None
    stopped = False
    if isinstance(pid, int) and _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, 15)
        deadline = time.monotonic() + grace_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, 9)
        deadline = time.monotonic() + 5.0
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped = True
    (home / STATE_FILE).unlink(missing_ok=True)
    if isinstance(pid, int) and _read_pid(home / PID_FILE) == pid:
        (home / PID_FILE).unlink(missing_ok=True)
    return stopped


# -- finding one ---------------------------------------------------------------------------


def _may_be_configured(env: MutableMapping[str, str]) -> bool:
    """Whether a Prefect settings file may set the API URL (then Prefect itself is asked).

    Read without importing Prefect, so that a first run can start the server before its own
    imports: the active profile in ``profiles.toml``, and ``.env``, ``prefect.toml`` and
    ``pyproject.toml`` in the working folder (any mention of the API URL or an ``api`` table).
    """
    home = prefect_home(env)
    profiles = Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        data = tomllib.loads(profiles.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError):
        return True
    active = env.get("PREFECT_PROFILE") or data.get("active") or ""
    profile = data.get("profiles", {}).get(active, {})
    if isinstance(profile, dict) and profile.get("PREFECT_API_URL"):
        return True
    for name in (".env", "prefect.toml", "pyproject.toml"):
        try:
            text = Path(name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if "PREFECT_API_URL" in text or re.search(r"^\s*\[(tool\.prefect\.)?api\]", text, re.M):
            return True
    return False


def _configured_api_url() -> str | None:
    """``PREFECT_API_URL`` as Prefect's own settings see it (environment, profile, files)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def _recorded(home: Path) -> LocalServer | None:
    """The server this module started under ``home``, if its process still runs."""
    state = read_state(home)
    if not state:
        return None
    pid, url, log = state.get("pid"), state.get("api_url"), state.get("log")
    if not isinstance(pid, int) or not isinstance(url, str) or not _is_prefect_server(pid):
        return None
    return LocalServer(url, pid, started=False, log=Path(str(log)) if log else None)


def _answering(env: MutableMapping[str, str]) -> LocalServer | None:
    """A Prefect server already answering on the preferred port (started some other way)."""
    url = f"http://127.0.0.1:{_preferred_port(env)}/api"
    return LocalServer(url, None, started=False) if _healthy(url, timeout_s=1.0) else None


def _preferred_port(env: MutableMapping[str, str]) -> int:
    try:
        return int(env.get("PREFECT_SERVER_API_PORT", _DEFAULT_PORT))
    except ValueError:
        return _DEFAULT_PORT


# -- starting one --------------------------------------------------------------------------


def _spawn(home: Path, env: MutableMapping[str, str]) -> LocalServer:
    port = _preferred_port(env)
    if not _port_free(port):
        port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    child = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    child.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    child["PREFECT_SERVER_UI_API_URL"] = api_url  # the UI calls :4200 otherwise (PLATFORM.md)
    log = home / LOG_FILE
    prefect = Path(sys.executable).with_name("prefect")
    cli = [str(prefect)] if prefect.exists() else [sys.executable, "-m", "prefect"]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*cli, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=child,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: outlives this run, stopped as one
        )
    state = {"api_url": api_url, "pid": proc.pid, "log": str(log), "started_at": time.time()}
    (home / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    if _read_pid(home / PID_FILE) is None or not _alive(_read_pid(home / PID_FILE) or -1):
        (home / PID_FILE).write_text(str(proc.pid), encoding="utf-8")
    return LocalServer(api_url, proc.pid, started=True, log=log)


# -- small helpers -------------------------------------------------------------------------


def _healthy(api_url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie (exited, not yet reaped) is not alive
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _is_prefect_server(pid: int) -> bool:
    """``pid`` runs and, where ``/proc`` tells, is a ``prefect server`` (not a re-used pid)."""
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the pid
    return b"server" in cmdline and any(b"prefect" in part for part in cmdline)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: two simultaneous first runs may race; the loser's bind fails
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
