"""Starting the local Prefect server's process, and the probes that recognise it.

Used by :mod:`flows.server.local_server` (which decides when): ports, the server's environment, the
spawn itself, and the two HTTP probes (``/api/health``; ``/api/admin/version`` with and without
the auth string).
"""

from __future__ import annotations

import base64
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flows.server._state import LOG_FILE, process_start, read_state, write_state

__all__ = ["answers_as", "free_port", "healthy", "server_environment", "spawn"]

_DEFAULT_PORT = 4200


def spawn(home: Path, env: Mapping[str, str], notes: list[str]) -> dict[str, Any]:
    """Start the server's process (``aiop server process``, :mod:`flows.server.process`) for ``home``; don't wait for it.

    The ports are the last server's of this home when free (links stored by earlier runs keep
    working), else ``PREFECT_SERVER_API_PORT`` (default 4200) and the next one, else free ports;
    a preferred port another program holds is said in ``notes`` (``(Port ... )``).

    Returns:
        The record written for it (its id, URLs, pid and the pid's start time, its log).
    """
    previous = _previous_ports(home)
    port, moved = _port(previous[0] or _preferred_port(env), avoid=set())
    docs_port, _ = _port(previous[1] or port + 1, avoid={port})
    if moved:
        notes.append(
            f"(Port {moved} is taken by a program that is not this home's server, so it listens"
            f" on {port}.)"
        )
    api_url = f"http://127.0.0.1:{port}/api"
    server_id = secrets.token_hex(8)
    log = home / LOG_FILE
    state: dict[str, Any] = {
        "version": 2,
        "server_id": server_id,
        "api_url": api_url,
        "docs_url": f"http://127.0.0.1:{docs_port}/",
        "pid": None,
        "process_start": None,
        "log": str(log),
        "started_at": time.time(),
    }
    write_state(home, state)  # first: the server stops itself if its record does not name it
    command = [
        sys.executable, "-m", "flows.cli", "server", "process", "--home", str(home), "--id", server_id,
        "--port", str(port), "--docs-port", str(docs_port),
    ]  # fmt: skip
    with log.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            command,
            env=server_environment(env, home, api_url),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: outlives this run, stopped as one
        )
    state.update(pid=proc.pid, process_start=process_start(proc.pid))
    write_state(home, state)
    return state


def server_environment(environ: Mapping[str, str], home: Path, api_url: str) -> dict[str, str]:
    """The environment the local server starts with: what a Prefect server needs, nothing else.

    Kept: the system's basics (``PATH``, ``HOME``, locale, time zone, temp folder, Python's path)
    and Prefect's server, logging and UI settings. Dropped: everything else, among it provider
    keys, ``AIOP_*`` (a Redis password), and Prefect's client settings (``PREFECT_API_URL``,
    ``PREFECT_API_KEY``, ``PREFECT_API_AUTH_STRING``...). The auth string is not in it either: the
    server's process reads it from its file.

    Examples:
        >>> env = server_environment(
        ...     {"PATH": "/bin", "ANTHROPIC_API_KEY": "sk", "PREFECT_API_KEY": "pk",
        ...      "PREFECT_SERVER_DATABASE_TIMEOUT": "30", "AIOP_BREAKER_REDIS_URL": "redis://:pw@r"},
        ...     Path("/h"), "http://127.0.0.1:4200/api")
        >>> sorted(env)  # doctest: +NORMALIZE_WHITESPACE
        ['PATH', 'PREFECT_HOME', 'PREFECT_SERVER_ANALYTICS_ENABLED',
         'PREFECT_SERVER_DATABASE_TIMEOUT', 'PREFECT_SERVER_UI_API_URL', 'PYTHONUNBUFFERED']
    """
    kept = {k: v for k, v in environ.items() if _server_needs(k)}
    kept.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    kept.update(PREFECT_HOME=str(home), PREFECT_SERVER_UI_API_URL=api_url, PYTHONUNBUFFERED="1")
    return kept


_BASICS = {
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT", "COMSPEC", "PATHEXT", "XDG_CACHE_HOME",
}  # fmt: skip
#: Prefect settings a server reads (its own, logging, UI, and the older names of server settings).
_PREFECT_SERVER_PREFIXES = (
    "PREFECT_SERVER_", "PREFECT_LOGGING_", "PREFECT_UI_", "PREFECT_API_DATABASE_",
    "PREFECT_API_SERVICES_", "PREFECT_MESSAGING_", "PREFECT_HOME", "PREFECT_PROFILE",
)  # fmt: skip


def _server_needs(name: str) -> bool:
    if name in _BASICS or name.startswith("LC_"):
        return True
    if name == "PREFECT_SERVER_API_AUTH_STRING":
        return False
    return name.startswith(_PREFECT_SERVER_PREFIXES)


# -- ports -----------------------------------------------------------------------------------


def _previous_ports(home: Path) -> tuple[int | None, int | None]:
    """The ports the last server of this home used (its record keeps them when it stops)."""
    state = read_state(home) or {}

    def port_of(url: object) -> int | None:
        match = re.match(r"^http://127\.0\.0\.1:(\d+)/", str(url or ""))
        return int(match[1]) if match else None

    return port_of(state.get("api_url")), port_of(state.get("docs_url"))


def _port(preferred: int, avoid: set[int]) -> tuple[int, int | None]:
    """``preferred`` when it is free, else a free port; and the preferred one when it moved."""
    if preferred not in avoid and _port_free(preferred):
        return preferred, None
    while True:
        port = free_port()
        if port not in avoid:
            return port, preferred


def _preferred_port(env: Mapping[str, str]) -> int:
    try:
        return int(env.get("PREFECT_SERVER_API_PORT", _DEFAULT_PORT))
    except ValueError:
        return _DEFAULT_PORT


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the one helper for it: the
    benchmarks and the tests use it too)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- probes ----------------------------------------------------------------------------------


def healthy(api_url: str, timeout_s: float) -> bool:
    """``<api>/health`` answers 200 (Prefect serves it without authentication)."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def answers_as(api_url: str, auth: str, timeout_s: float) -> bool:
    """The server at ``api_url`` proves it is the one that holds ``auth``: an API request
    without it is refused (401) and the same request with it is served (200). A server without
    authentication, or with another auth string, fails one of the two."""
    return _status(api_url, None, timeout_s) == 401 and _status(api_url, auth, timeout_s) == 200


def _status(api_url: str, auth: str | None, timeout_s: float) -> int | None:
    """The HTTP status of ``GET <api>/admin/version`` (what Prefect's UI asks to check a login)."""
    request = urllib.request.Request(f"{api_url}/admin/version")
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, ValueError):
        return None
