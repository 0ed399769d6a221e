"""What ``$PREFECT_HOME`` records about the local Prefect server, and how a process is recognised.

Shared by :mod:`flows.server.local_server` (which starts, finds and stops the server) and
:mod:`flows.server.process` (the server's own process, which watches its record). Standard
library only: the server's process imports it before Prefect.

* ``aiop-local-server.json``, the **record**: the server's id, API and docs URLs, pid, the pid's
  start time, its log. Written atomically; the server stops itself when its record is gone or
  names another server (its home was deleted, or another server replaced it).
* ``aiop-local-server.auth``, the **auth string** (``aiop:<random>``, mode 0600): the server
  demands it of every API request (Prefect's ``PREFECT_SERVER_API_AUTH_STRING``), clients send it
  (``PREFECT_API_AUTH_STRING``), the UI asks for it once. Kept across restarts.

A pid alone proves nothing (pids are reused, after a reboot at once): a process is this home's
server only when its pid's start time is the one recorded (Linux: ``/proc/<pid>/stat`` and the
boot id; elsewhere ``ps -o lstart``), or, where no start time can be read, when its command line
names the recorded server id.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = [
    "AUTH_FILE",
    "AUTH_USER",
    "LOG_FILE",
    "STATE_FILE",
    "alive",
    "is_recorded_process",
    "process_start",
    "read_auth",
    "read_state",
    "wait_gone",
    "write_state",
]

STATE_FILE = "aiop-local-server.json"
AUTH_FILE = "aiop-local-server.auth"
LOG_FILE = "aiop-local-server.log"
#: The user part of the auth string (Prefect's basic auth takes ``user:password``).
AUTH_USER = "aiop"
_MAX_FILE_BYTES = 64 * 1024


def read_state(home: Path) -> dict[str, Any] | None:
    """What ``home``'s record says about the server started there (None: nothing usable)."""
    data = _read_small(home / STATE_FILE)
    if data is None:
        return None
    try:
        state = json.loads(data)
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def write_state(home: Path, state: dict[str, Any]) -> None:
    """Replace ``home``'s record at once (a reader sees the old or the new one, never half)."""
    tmp = home / f".{STATE_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(home / STATE_FILE)


def read_auth(home: Path, *, create: bool = False) -> tuple[str, str | None]:
    """The auth string kept in ``home`` (made, mode 0600, when ``create`` and there is none),
    and a note when its permissions had to be tightened.

    Raises:
        FileNotFoundError: there is none and ``create`` is False.
        ValueError: the file is not a usable auth string (a folder, a FIFO, too long, empty).
    """
    path = home / AUTH_FILE
    if create and not path.exists():
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(f"{AUTH_USER}:{secrets.token_urlsafe(32)}\n")
    note = None
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file")
    if os.name != "nt" and info.st_mode & 0o077:
        if info.st_uid != os.geteuid():
            raise ValueError(f"{path} may be read by other users and belongs to another user")
        path.chmod(0o600)
        note = (
            f"note: {path} had permissions {stat.S_IMODE(info.st_mode):04o} (other users could"
            " read the local server's auth string); they are now 0600."
        )
    data = _read_small(path)
    text = (data or b"").decode("utf-8", "replace").strip()
    if data is None or ":" not in text or len(text) < len(AUTH_USER) + 17 or "\n" in text:
        raise ValueError(f"{path} does not hold an auth string (user:password on one line)")
    return text, note


def _read_small(path: Path) -> bytes | None:
    """The bytes of a small regular file; None when missing, not regular or too large.

    Opened without blocking and checked before reading: a FIFO or a device never hangs this.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_FILE_BYTES:
            return None
        return os.read(fd, _MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)


# -- processes ---------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie (exited, not yet reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z"):
            return False
    return True


def process_start(pid: int) -> str | None:
    """When ``pid`` started, as text that differs for a reused pid; None when it cannot be read.

    Linux: the boot id and the start time in clock ticks since boot (``/proc``). Elsewhere:
    ``ps -o lstart=``, to the second.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{fields[19]}"
    except (OSError, IndexError):
        return _ps(pid, "lstart")


def _command_line(pid: int) -> str | None:
    try:
        return (
            Path(f"/proc/{pid}/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode("utf-8", "replace")
        )
    except OSError:
        return _ps(pid, "command")


def _ps(pid: int, column: str) -> str | None:
    """One ``ps`` column of process ``pid``, where there is no ``/proc`` (macOS)."""
    try:
        done = subprocess.run(
            ["ps", "-o", f"{column}=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def is_recorded_process(state: dict[str, Any]) -> bool:
    """Whether the pid in ``state`` is still the process that was recorded (not a reused pid)."""
    pid, started, server_id = state.get("pid"), state.get("process_start"), state.get("server_id")
    if not isinstance(pid, int) or isinstance(pid, bool) or not alive(pid):
        return False
    now = process_start(pid)
    if isinstance(started, str) and now is not None:
        return now == started
    line = _command_line(pid)
    return isinstance(server_id, str) and line is not None and server_id in line


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` is gone (or a zombie); True when it went in time."""
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
