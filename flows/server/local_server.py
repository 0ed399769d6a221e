"""Which Prefect API a command talks to, and the local Prefect server this ``PREFECT_HOME`` keeps.

:func:`prefect_api` is the one place that decides, for every command (the main job, ``aiop agents``,
``aiop verify``, ``aiop history``, automations, deploy, serve, the drill):

1. the server the user named: ``PREFECT_API_URL`` in the environment, or in Prefect's settings
   files (the active profile, ``.env``, ``prefect.toml``, ``pyproject.toml``);
2. else, unless ``AIOP_PREFECT_SERVER=embedded``, **the local server this home started**: its
   record ``$PREFECT_HOME/aiop-local-server.json`` names it, the recorded process is still the
   one that was started (pid *and* its start time: a reused pid is not it), and the URL answers
   to this home's auth string (so it is not some other program that took the port);
3. else none: Prefect's temporary per-process server, or, for the main job only
   (``start=True``), a new local server, announced in one line.

Nothing else is ever used: a server of another ``PREFECT_HOME`` or another user, or any other
program answering on port 4200, makes the main job start its own server on a free port, and
says so in the same line (adr/0016-default-run-prefect-server.md).

The local server (``aiop server process``, :mod:`flows.server.process`) runs Prefect's ``prefect server start`` on
127.0.0.1 with the environment a Prefect server needs and nothing else (no provider keys, no
``AIOP_*`` values: :func:`server_environment`), demands the auth string kept in
``$PREFECT_HOME/aiop-local-server.auth`` (mode 0600) of every API request, serves this checkout's
documentation beside it, and stops itself when its record goes (its home was deleted). Stop it
with ``aiop server stop``, which only ever signals the recorded process;
``status`` shows it and ``env`` prints what a client of your own needs (``PREFECT_API_URL``,
``PREFECT_API_AUTH_STRING``). Prefect's ``prefect server stop`` reads ``server.pid``, which this
module never writes (a stale one could name a reused pid); one written by an older version is
removed.

Examples:
    >>> api = prefect_api(environ={"PREFECT_API_URL": "http://127.0.0.1:4200/api"})
    >>> (api.url, api.source)  # a configured API is always used as it is
    ('http://127.0.0.1:4200/api', 'PREFECT_API_URL')
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from adapters.settings import variable_name
from flows.server._start import answers_as, free_port, healthy, server_environment, spawn
from flows.server._state import (
    AUTH_FILE,
    LOG_FILE,
    STATE_FILE,
    alive,
    is_recorded_process,
    read_auth,
    read_state,
    wait_gone,
    write_state,
)

__all__ = [
    "MODE_VARIABLE",
    "STATE_FILE",
    "STOP_COMMAND",
    "LocalServer",
    "PrefectApi",
    "client_environment",
    "free_port",
    "healthy",
    "prefect_api",
    "prefect_home",
    "read_state",
    "running",
    "server_environment",
    "stop",
]

#: ``background`` (default): use or start the local server; ``embedded``: Prefect's temporary one.
MODE_VARIABLE = variable_name("prefect_server")
PID_FILE = "server.pid"  # Prefect's own (`prefect server start --background` / `stop`)
_LOCK_FILE = "aiop-local-server.lock"
_READY_TIMEOUT_S = 180.0
#: The command that stops the local server (named in the lines that announce it).
STOP_COMMAND = "aiop server stop"

Source = Literal["PREFECT_API_URL", "Prefect settings", "local server", "none"]


@dataclass(frozen=True)
class LocalServer:
    """The local server of one ``PREFECT_HOME``.

    Attributes:
        api_url: its API URL.
        docs_url: where it serves the documentation (``http://127.0.0.1:<port>/``).
        pid: its process.
        started: True when this call started it (it still has to come up).
        log: where its output goes.
        home: the ``PREFECT_HOME`` it belongs to.
        server_id: the id in its record (and on its command line).
        auth_string: what clients send (``PREFECT_API_AUTH_STRING``); never shown.
        notes: lines to show about how it was chosen (a port in use, a record corrected).
    """

    api_url: str
    docs_url: str
    pid: int
    started: bool
    log: Path
    home: Path
    server_id: str
    auth_string: str = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def ui_url(self) -> str:
        """Its UI address (the API URL without ``/api``)."""
        return self.api_url.removesuffix("/api")

    def answers(self, timeout_s: float = 2.0) -> bool:
        """It answers, and proves it is this server: an API request without this home's auth
        string is refused (401) and the same request with it is served."""
        return healthy(self.api_url, timeout_s) and answers_as(
            self.api_url, self.auth_string, timeout_s
        )

    def wait_ready(self, timeout_s: float = _READY_TIMEOUT_S) -> bool:
        """Wait until it answers as itself; False when its process exited or time ran out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if healthy(self.api_url, timeout_s=2.0):
                return self.answers()
            if not alive(self.pid):
                return False
            time.sleep(0.1)
        return False


@dataclass(frozen=True)
class PrefectApi:
    """The Prefect API a command talks to (:func:`prefect_api`).

    Attributes:
        url: the API URL; None for Prefect's temporary per-process server (or, with source
            ``Prefect settings``, whatever Prefect's own settings say).
        source: why this one: ``PREFECT_API_URL``, ``Prefect settings``, ``local server`` or
            ``none``.
        local: the local server, when it is the one.
        docs_url: the docs the local server serves, when the API is that server (also when
            ``PREFECT_API_URL`` names it); None otherwise.
    """

    url: str | None
    source: Source
    local: LocalServer | None = None
    docs_url: str | None = None

    @property
    def ui_url(self) -> str | None:
        """The UI address of that server (None without one)."""
        return self.url.rstrip("/").removesuffix("/api") if self.url else None

    def missing(self, what: str) -> str | None:
        """Why ``what`` (a command that needs a server which keeps running) cannot run against
        this API, in one paragraph; None when it can."""
        if self.url is not None or self.source == "Prefect settings":
            return None
        return (
            f"{what} needs a Prefect server that keeps running, and there is none: PREFECT_API_URL"
            " is not set and the local Prefect server of this PREFECT_HOME is not running. Run"
            " `aiop run` once (it starts the local server and keeps it), or"
            " start a server of your own (`prefect server start`) and export PREFECT_API_URL to"
            " its API (http://127.0.0.1:4200/api by default); then run this again."
        )

    def describe(self) -> str:
        """What it is, in a few words, for messages (credentials never shown)."""
        from adapters.redaction import redact_url

        if self.local is not None:
            return f"the local Prefect server of this PREFECT_HOME ({self.local.ui_url})"
        if self.source == "PREFECT_API_URL" and self.url:
            return f"the Prefect server in PREFECT_API_URL ({redact_url(self.url)})"
        if self.source == "Prefect settings":
            shown = f" ({redact_url(self.url)})" if self.url else ""
            return f"the Prefect server your Prefect settings name{shown}"
        return "no Prefect server (Prefect's temporary one per command)"


def prefect_home(environ: Mapping[str, str] | None = None) -> Path:
    """``PREFECT_HOME`` (default ``~/.prefect``), with ``~`` expanded."""
    env = os.environ if environ is None else environ
    return Path(env.get("PREFECT_HOME") or "~/.prefect").expanduser()


def prefect_api(
    environ: MutableMapping[str, str] | None = None,
    *,
    mode: str = "background",
    start: bool = False,
    notice: IO[str] | None = None,
) -> PrefectApi:
    """Decide which Prefect API this command talks to, and point ``environ`` at it.

    See the module docstring for the order. When the local server is chosen, ``environ``
    (default ``os.environ``) gets ``PREFECT_API_URL`` and ``PREFECT_API_AUTH_STRING``; call this
    before importing Prefect (the main job starts the server while it imports, then waits for it
    in :func:`flows.ui.console.run_flow_quietly`).

    Args:
        environ: the environment to read and update.
        mode: the ``prefect_server`` setting: ``background`` or ``embedded``.
        start: start the local server when none runs (the main job); other commands never do.
        notice: where the one-line announcement and notes go (default stderr).
    """
    env = os.environ if environ is None else environ
    out = notice or sys.stderr
    named = env.get("PREFECT_API_URL")
    if named:
        return PrefectApi(named, "PREFECT_API_URL", docs_url=_docs_of_local(env, named))
    if _may_be_configured(env):
        configured = _configured_api_url() if env is os.environ else None
        if configured or env is not os.environ:  # another mapping cannot be asked: assume so
            return PrefectApi(configured, "Prefect settings")
    if mode == "embedded":
        return PrefectApi(None, "none")
    home = prefect_home(env)
    try:
        home.mkdir(parents=True, exist_ok=True)
        with _locked(home / _LOCK_FILE):
            server, notes = _recorded(home)
            if server is None and start:
                server = _start(home, env, notes)
    except (OSError, ValueError) as exc:
        if start:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(
                f"note: cannot start the local Prefect server in {home} ({why}); this run uses"
                " a temporary embedded server instead.",
                file=out,
                flush=True,
            )
        return PrefectApi(None, "none")
    for note in notes:
        if not note.startswith("(Port"):  # that one is part of the announcement
            print(note, file=out, flush=True)
    if server is None:
        return PrefectApi(None, "none")
    if not server.started and not start and not server.answers(timeout_s=1.0):
        return PrefectApi(None, "none")
    env["PREFECT_API_URL"] = server.api_url
    env["PREFECT_API_AUTH_STRING"] = server.auth_string
    if server.started:
        _announce(server, out)
    return PrefectApi(server.api_url, "local server", server, server.docs_url)


def _start(home: Path, env: Mapping[str, str], notes: list[str]) -> LocalServer:
    """Start this home's server (:func:`flows.server._start.spawn`), its auth string first."""
    auth, note = read_auth(home, create=True)  # ValueError: a file in the way; said by the caller
    if note:
        notes.append(note)
    state = spawn(home, env, notes)
    return LocalServer(
        api_url=state["api_url"],
        docs_url=state["docs_url"],
        pid=state["pid"],
        started=True,
        log=Path(state["log"]),
        home=home,
        server_id=state["server_id"],
        auth_string=auth,
        notes=tuple(n for n in notes if n.startswith("(Port")),
    )


def _docs_of_local(env: Mapping[str, str], url: str) -> str | None:
    """The docs address of this home's local server when ``url`` is that server's API (a client
    pointed at it with ``aiop server env``)."""
    state = read_state(prefect_home(env))
    if state is None or state.get("api_url") != url.rstrip("/") or not is_recorded_process(state):
        return None
    docs = state.get("docs_url")
    return docs if isinstance(docs, str) else None


def _announce(server: LocalServer, out: IO[str]) -> None:
    moved = " ".join(server.notes)
    print(
        f"Starting a local Prefect server for this and later runs (no PREFECT_API_URL is set):"
        f" UI at {server.ui_url} (it asks for the auth string in {server.home / AUTH_FILE}),"
        f" docs at {server.docs_url}, log in {server.log}.{' ' + moved if moved else ''} It keeps"
        f" running; `aiop server status` shows it, `{STOP_COMMAND}` stops it"
        f" ({MODE_VARIABLE}=embedded: a temporary server per run instead).",
        file=out,
        flush=True,
    )


def client_environment(home: Path) -> dict[str, str] | None:
    """``PREFECT_API_URL`` and ``PREFECT_API_AUTH_STRING`` of ``home``'s local server, for a
    client of your own (what ``aiop server env`` prints); None when it does not
    run."""
    with _locked_if_home(home):
        server, _ = _recorded(home) if home.is_dir() else (None, [])
    if server is None:
        return None
    return {"PREFECT_API_URL": server.api_url, "PREFECT_API_AUTH_STRING": server.auth_string}


def stop(home: Path, grace_s: float = 10.0) -> bool:
    """Stop the local server this ``home`` started, if its recorded process still runs.

    Only the recorded process (pid and start time) is ever signalled, with its process group;
    a pid that now belongs to another program is never touched. The record goes either way.

    Returns:
        True when a running server was stopped.
    """
    with _locked_if_home(home):
        state = read_state(home)
        if state is None or state.get("server_id") is None:
            _forget_pid_file(home, state)
            return False
        pid = state.get("pid")
        stopped = False
        if isinstance(pid, int) and is_recorded_process(state):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            if not wait_gone(pid, grace_s):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                wait_gone(pid, 5.0)
            stopped = True
        _forget(home, state)
    return stopped


# -- finding it ----------------------------------------------------------------------------


def _recorded(home: Path) -> tuple[LocalServer | None, list[str]]:
    """The server ``home``'s record names, if that very process still runs; stale records are
    corrected (never by stopping a process this home did not start). Call with the lock held."""
    state = read_state(home)
    if state is None:
        return None, []
    notes: list[str] = []
    if "version" not in state:  # an older version's record: it proves nothing about the pid
        pid = state.get("pid")
        if isinstance(pid, int) and alive(pid):
            notes.append(
                f"note: an older version recorded a local Prefect server with pid {pid} (it ran"
                f" without authentication). The record was replaced and that pid left alone: if"
                f" `ps -o args= -p {pid}` shows `prefect server start`, stop it with `kill {pid}`."
            )
        _forget(home, state)
        return None, notes
    if state.get("server_id") is None:  # stopped
        return None, notes
    if not is_recorded_process(state):
        pid = state.get("pid")
        if isinstance(pid, int) and alive(pid):
            notes.append(
                f"note: {home / STATE_FILE} named pid {pid}, which is now another program; the"
                " record was corrected and that program left alone."
            )
        _forget(home, state)
        return None, notes
    try:
        auth, note = read_auth(home)
    except (OSError, ValueError) as exc:
        notes.append(f"note: the local Prefect server's auth string cannot be read ({exc}).")
        return None, notes
    if note:
        notes.append(note)
    return (
        LocalServer(
            api_url=str(state.get("api_url")),
            docs_url=str(state.get("docs_url")),
            pid=int(state["pid"]),
            started=False,
            log=Path(str(state.get("log") or home / LOG_FILE)),
            home=home,
            server_id=str(state["server_id"]),
            auth_string=auth,
        ),
        notes,
    )


def _forget(home: Path, state: Mapping[str, Any]) -> None:
    """Mark ``home``'s record as naming no running server (it named ``state``'s), keeping its
    addresses so that the next server listens where stored links point; and remove a
    ``server.pid`` an older version wrote for it, so that ``prefect server stop`` cannot signal a
    reused pid."""
    current = read_state(home)
    if current is not None and current.get("server_id") == state.get("server_id"):
        _forget_pid_file(home, state)
        write_state(
            home,
            {
                "version": 2,
                "server_id": None,
                "api_url": state.get("api_url"),
                "docs_url": state.get("docs_url"),
                "stopped_at": time.time(),
            },
        )


def _forget_pid_file(home: Path, state: Mapping[str, Any] | None) -> None:
    """Remove Prefect's ``server.pid`` when an older version wrote it for ``state``'s pid."""
    pid = state.get("pid") if state else None
    if isinstance(pid, int) and _read_pid(home / PID_FILE) == pid:
        (home / PID_FILE).unlink(missing_ok=True)


def _may_be_configured(env: Mapping[str, str]) -> bool:
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


# -- small helpers -------------------------------------------------------------------------


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


_held: set[Path] = set()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes, re-entrant within this one."""
    if path in _held:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: two simultaneous first runs may race; the loser's bind fails
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _held.add(path)
        try:
            yield
        finally:
            _held.discard(path)
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _locked_if_home(home: Path) -> Iterator[None]:
    """The home's lock when the home still exists (a deleted home has nothing to lock)."""
    if home.is_dir():
        with _locked(home / _LOCK_FILE):
            yield
    else:
        yield


def running(home: Path) -> tuple[LocalServer | None, list[str]]:
    """The server ``home``'s record names if that very process still runs (None otherwise), and
    notes about stale records it cleared (``aiop server status|env``)."""
    with _locked_if_home(home):
        return _recorded(home) if home.is_dir() else (None, [])


if __name__ == "__main__":
    print("python -m flows.server.local_server is now `aiop server`", file=sys.stderr)
    sys.exit(2)
