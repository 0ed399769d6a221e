"""Processes the tests start (servers, workers): start in their own group, wait, stop, read logs."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from flows.benchmarks._server import stop_process_group as stop
from flows.server.local_server import free_port

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["free_port", "start", "stop", "tail", "wait_http"]


def start(
    args: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own process group, output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(args),
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def tail(log: Path, chars: int = 4000) -> str:
    """The end of a process log, for failure messages."""
    if not log.exists():
        return f"(no log at {log})"
    return log.read_text(encoding="utf-8", errors="replace")[-chars:]


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Wait until ``url`` answers 200; fail with the process log when it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited with {proc.returncode}:\n{tail(log)}", pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout_s:g} s:\n{tail(log)}", pytrace=False)
