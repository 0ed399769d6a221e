"""A Prefect server for the measurements: ``prefect server start`` in its own process group.

The server gets a fresh ``PREFECT_HOME`` (its SQLite database lives there), analytics off, and the
task-run recorder flushing small batches every second (PLATFORM.md: with the defaults, 1,000 task
runs were recorded 21 s after the flow returned). Nothing here imports Prefect, so the caller can
set ``PREFECT_*`` variables for its own process first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from flows.server.local_server import free_port, healthy

__all__ = ["RECORDER_SETTINGS", "PrefectServer", "prefect_server"]

#: Small task-run recorder batches flushed every second (see the module docstring).
RECORDER_SETTINGS = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}
_STARTUP_TIMEOUT_S = 120.0


class PrefectServer:
    """A server process being started (:meth:`wait_healthy` waits until it answers).

    Attributes:
        api_url: its API URL (what ``PREFECT_API_URL`` must be set to); known before it answers,
            so this process can set it and import Prefect while the server starts.
        home: its ``PREFECT_HOME``.
        log: the file holding its output.
        pid: its process id (the leader of its process group).
    """

    def __init__(self, proc: subprocess.Popen[bytes], api_url: str, home: Path, log: Path) -> None:
        self._proc = proc
        self._spawned = time.monotonic()
        self.api_url = api_url
        self.home = home
        self.log = log
        self.pid = proc.pid

    def wait_healthy(self) -> float:
        """Block until ``/health`` answers; return the seconds since the server was spawned.

        Raises:
            RuntimeError: the server exited (its log tail is in the message).
            TimeoutError: it did not answer in time.
        """
        _wait_healthy(self.api_url, self._proc, self.log)
        return time.monotonic() - self._spawned


def _server_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(RECORDER_SETTINGS)
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def _wait_healthy(api_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"prefect server exited with code {proc.returncode}:\n{tail}")
        if healthy(api_url, timeout_s=2):
            return
        time.sleep(0.2)
    raise TimeoutError(f"prefect server at {api_url} not healthy within {_STARTUP_TIMEOUT_S:g} s")


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the process group of ``proc``, then SIGKILL whatever is left after ``grace_s``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def prefect_server(base: Path) -> Iterator[PrefectServer]:
    """Spawn ``prefect server start`` under ``base``; stop it (its whole group) on exit.

    Args:
        base: a folder of the caller's; the server's home and log go in it.

    Yields:
        The server, possibly still starting: call :meth:`PrefectServer.wait_healthy`.

    Example:
        >>> with prefect_server(Path("/tmp/bench")) as server:  # doctest: +SKIP
        ...     os.environ["PREFECT_API_URL"] = server.api_url
        ...     server.wait_healthy()
    """
    home = base / "server-home"
    home.mkdir(parents=True, exist_ok=True)
    log = base / "server.log"
    port = free_port()
    prefect = str(Path(sys.executable).with_name("prefect"))
    args = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            env=_server_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield PrefectServer(proc, f"http://127.0.0.1:{port}/api", home, log)
    finally:
        stop_process_group(proc)
