"""``aiop server status|stop|env``: the local Prefect server this ``PREFECT_HOME`` keeps for the
main job (:mod:`flows.server.local_server`).

Examples:
    $ aiop server status
    $ eval "$(aiop server env)"
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import IO

import click

from flows.cli._preamble import EXIT_FAILED, EXIT_OK
from flows.server.local_server import (
    STOP_COMMAND,
    LocalServer,
    prefect_home,
    read_state,
    running,
    stop,
)

__all__ = ["server"]


@click.group("server")
def server() -> None:
    """The local Prefect server this PREFECT_HOME keeps for the main job."""


@server.command("status")
def status() -> int:
    """Whether it runs, where, and how to log in."""
    local = _running(to=sys.stdout)
    if local is None:
        return EXIT_FAILED
    from flows.server._state import AUTH_FILE

    print(f"UI:    {local.ui_url}  (log in with the auth string in {local.home / AUTH_FILE})")
    print(f"API:   {local.api_url}")
    print(f"Docs:  {local.docs_url}")
    print(f"pid:   {local.pid}")
    print(f"Log:   {local.log}")
    print(f'Use it from your own shell: eval "$(aiop server env)"; stop it: {STOP_COMMAND}')
    return EXIT_OK


@server.command("stop")
def stop_server() -> int:
    """Stop it (only the process this home started)."""
    home = prefect_home()
    state = read_state(home)
    if stop(home):
        print(f"Stopped the local Prefect server of {home} (pid {state and state.get('pid')}).")
    else:
        print(f"No local Prefect server of {home} is running.")
    return EXIT_OK


@server.command("env")
def env() -> int:
    """Print the export lines a client of your own needs (eval "$(aiop server env)"); they hold
    the auth string."""
    local = _running(to=sys.stderr)
    if local is None:
        return EXIT_FAILED
    print(f"export PREFECT_API_URL={shlex.quote(local.api_url)}")
    print(f"export PREFECT_API_AUTH_STRING={shlex.quote(local.auth_string)}")
    return EXIT_OK


def _running(to: IO[str]) -> LocalServer | None:
    """This home's running server; None after saying, on ``to``, that none runs."""
    home = prefect_home()
    local, notes = running(home)
    for note in notes:
        print(note, file=sys.stderr)
    if local is None or not local.answers():
        print(
            f"No local Prefect server of {home} is running; the next `aiop run` without"
            " PREFECT_API_URL starts one.",
            file=to,
        )
        return None
    return local


@server.command("process", hidden=True)
@click.option("--home", required=True, type=click.Path(path_type=Path))
@click.option("--id", "server_id", required=True)
@click.option("--port", required=True, type=int)
@click.option("--docs-port", required=True, type=int)
def process(home: Path, server_id: str, port: int, docs_port: int) -> int:
    """The server's own process (started by the main job, never by hand)."""
    from flows.server.process import run_server

    return run_server(home, server_id, port, docs_port)
