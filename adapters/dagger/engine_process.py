"""The engine's side channel: its log lines and its CLI process.

When the Dagger SDK provisions an engine it starts a ``dagger session`` CLI whose stderr is the log
stream given as ``log_output``. :class:`EngineLog` is that stream: a pipe owned by one run, read on
the event loop, whose lines are forwarded live to the run's line sink, and which identifies the
run's CLI process (the child whose fd 2 is this pipe) so that it can be killed when the run gives
up on it (:meth:`EngineLog.kill_session_processes`). Nothing here imports ``dagger``: the SDK only
sees a text stream and a rich console.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO, cast

import rich.console
import rich.live

from adapters.contract import StepSpec, mask_secrets
from adapters.runner import LineSink, Stream

__all__ = ["EngineLog", "ProgressConsole", "engine_said", "forward_output", "line_sink"]

# The runner's logger: these messages are about its runs.
logger = logging.getLogger("adapters.dagger.runner")

#: How long to wait for the last engine log lines after the session closed.
_LOG_DRAIN_S = 0.5
#: The CLI's advertisement for its tracing service, one line by design (dagql/idtui/frontend.go
#: at v0.21.8, ``loggedOutTraceMsg``): dropped here rather than by writing DAGGER_NO_NAG into this
#: process's environment.
_NAG = "To hide set DAGGER_NO_NAG"
#: Engine log lines kept for error messages.
_LOG_TAIL_LINES = 5


class EngineLog(io.TextIOBase):
    """``log_output`` for the SDK: forwards each engine log line, as it arrives, to a sink.

    When the SDK starts a ``dagger session`` CLI it asks for ``fileno()`` and hands the descriptor
    to the CLI as its stderr. That descriptor is a pipe owned by this run, read on the event loop
    (so lines arrive live and in the loop's thread), and it identifies this run's CLI process: the
    child whose fd 2 is this pipe. Text written with ``write()`` (the SDK's progress messages, or
    the CLI's stderr on platforms without ``add_reader``) is forwarded the same way.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, emit: Callable[[str], None]) -> None:
        super().__init__()
        self._loop = loop
        self._emit = emit
        self._lock = threading.Lock()
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._read_fd: int | None = None
        self._write_fd: int | None = None
        self._inode: int | None = None
        self._cli_before: set[int] = set()
        self._spawn_over = False
        self._finished = False
        self._reading = False
        self._eof = asyncio.Event()
        self.last_lines: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL_LINES)

    # -- the TextIO surface the SDK and rich use (any thread) --

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        self._feed(s)
        return len(s)

    def fileno(self) -> int:
        with self._lock:
            if self._spawn_over or self._finished or sys.platform == "win32":
                raise io.UnsupportedOperation("fileno")
            if self._write_fd is None:
                if not _PROC.is_dir():  # no /proc: remember which CLIs ran before this one
                    self._cli_before = {pid for pid, _, _ in _session_clis()}
                read_fd, write_fd = os.pipe()
                os.set_blocking(read_fd, False)
                self._read_fd, self._write_fd = read_fd, write_fd
                self._inode = os.fstat(write_fd).st_ino
                self._loop.call_soon_threadsafe(self._start_reading)
            return self._write_fd

    # -- lifecycle (loop thread) --

    def spawn_over(self) -> None:
        """The SDK will start no CLI any more: drop our copy of the pipe's write end."""
        with self._lock:
            self._spawn_over = True
            if self._write_fd is not None:
                os.close(self._write_fd)
                self._write_fd = None

    def kill_session_processes(self) -> list[int]:
        """Kill the CLI this run started (and its children). Returns their pids.

        With ``/proc`` (Linux) the CLI is the child whose stderr is this run's pipe. Elsewhere
        (macOS, BSD) ``ps`` lists the children running ``<cli> session`` with the Python SDK's
        label that were not there when this run asked for the pipe.
        """
        if self._inode is None:
            return []
        if _PROC.is_dir():
            pids = _processes_with_stderr_pipe(self._inode)
        else:
            pids = _new_session_clis(self._cli_before)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if pids:
            logger.warning("killed the Dagger CLI of this run (pids %s)", pids)
        return pids

    async def aclose(self) -> None:
        """Wait briefly for the last lines, then stop reading and release the pipe."""
        if self._reading and self._spawn_over:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._eof.wait(), _LOG_DRAIN_S)
        self._finished = True
        self._stop_reading()
        with self._lock:
            if self._read_fd is not None:
                os.close(self._read_fd)
                self._read_fd = None
            rest, self._partial = self._partial, ""
        if rest:
            self._deliver(rest)

    # -- internals --

    def _start_reading(self) -> None:
        if self._finished or self._read_fd is None or self._reading:
            return
        self._loop.add_reader(self._read_fd, self._on_readable)
        self._reading = True

    def _stop_reading(self) -> None:
        if self._reading and self._read_fd is not None:
            self._loop.remove_reader(self._read_fd)
        self._reading = False

    def _on_readable(self) -> bool:
        """Read what is there; False once nothing more can be read now."""
        if self._read_fd is None or not self._reading:
            return False
        try:
            data = os.read(self._read_fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:
            self._feed(self._decoder.decode(data))
            return True
        self._stop_reading()
        self._feed(self._decoder.decode(b"", final=True))
        self._eof.set()
        return False

    def pump(self) -> None:
        """Deliver every line already written to the pipe (before quoting ``last_lines``)."""
        while self._on_readable():
            pass

    def _feed(self, text: str) -> None:
        with self._lock:
            if self._finished:
                return
            *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._deliver(line)

    def _deliver(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line or _NAG in line:
            return
        self.last_lines.append(line)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._emit(line)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
                self._loop.call_soon_threadsafe(self._emit, line)


class ProgressConsole(rich.console.Console):
    """The console of the SDK's progress display, writing to the engine log.

    The SDK starts a live status display (with a refresh thread) while provisioning and stops it
    only when the session comes up; this console remembers its displays so that a failed or
    abandoned start can stop them too, instead of leaking a thread per failure.
    """

    def __init__(self, engine_log: EngineLog) -> None:
        super().__init__(file=cast(TextIO, engine_log), stderr=True)
        self._displays: list[rich.live.Live] = []

    def set_live(self, live: rich.live.Live) -> bool:
        self._displays.append(live)
        return super().set_live(live)

    def stop_displays(self) -> None:
        for live in self._displays:
            with contextlib.suppress(Exception):
                live.stop()
        self._displays.clear()


def engine_said(engine_log: EngineLog, spec: StepSpec | None) -> str:
    """`` (last engine output: ...)``, masked, or nothing when the engine said nothing."""
    engine_log.pump()
    said = mask_secrets(" | ".join(engine_log.last_lines), spec.secret_values() if spec else [])
    return f" (last engine output: {said})" if said else ""


#: Where Linux lists processes; without it the portable ``ps`` path is used.
_PROC = Path("/proc")
#: The label the Dagger Python SDK gives the ``dagger session`` CLI it starts.
_SDK_LABEL = "dagger.io/sdk.name:python"


def _processes(rows: list[tuple[int, int, str]]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for pid, ppid, _ in rows:
        children.setdefault(ppid, []).append(pid)
    return children


def _ps() -> list[tuple[int, int, str]]:
    """``(pid, ppid, command)`` of every process, from ``ps`` (POSIX; macOS and Linux)."""
    try:
        listed = subprocess.run(
            ["ps", "-ww", "-A", "-o", "pid=", "-o", "ppid=", "-o", "command="],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in listed.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            rows.append((int(parts[0]), int(parts[1]), parts[2] if len(parts) > 2 else ""))
    return rows


def _session_clis(rows: list[tuple[int, int, str]] | None = None) -> list[tuple[int, int, str]]:
    """Our children running ``<cli> session ... --label dagger.io/sdk.name:python``."""
    me = os.getpid()
    return [
        row
        for row in (_ps() if rows is None else rows)
        if row[1] == me and " session " in f" {row[2]} " and _SDK_LABEL in row[2]
    ]


def _new_session_clis(before: set[int]) -> list[int]:
    """Session CLIs started since ``before`` was taken, and their descendants (portable)."""
    rows = _ps()
    children = _processes(rows)
    roots = [pid for pid, _, _ in _session_clis(rows) if pid not in before]
    found: list[int] = []
    while roots:
        pid = roots.pop()
        found.append(pid)
        roots.extend(children.get(pid, []))
    return found


def _processes_with_stderr_pipe(inode: int) -> list[int]:
    """Our child processes whose stderr is the pipe ``inode``, and their descendants (Linux)."""
    proc = _PROC
    if not proc.is_dir():
        return []
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    target = f"pipe:[{inode}]"
    roots = []
    for pid in children.get(os.getpid(), []):
        with contextlib.suppress(OSError):
            if str((proc / str(pid) / "fd" / "2").readlink()) == target:
                roots.append(pid)
    found: list[int] = []
    while roots:
        pid = roots.pop()
        found.append(pid)
        roots.extend(children.get(pid, []))
    return found


def line_sink(
    on_line: LineSink | None, stream: Stream, secrets: Sequence[str]
) -> Callable[[str], None]:
    """``on_line`` for one stream, secret values masked; a sink that raises loses only that line."""

    def emit(line: str) -> None:
        if on_line is None:
            return
        try:
            on_line(stream, mask_secrets(line, secrets))
        except Exception:
            logger.exception("on_line raised for a %s line; line dropped", stream)

    return emit


def forward_output(
    on_line: LineSink | None, secrets: Sequence[str], *, stdout: str, stderr: str
) -> None:
    """Give each line of a finished command's output to ``on_line``, secret values masked."""
    for stream, text in (("stdout", stdout), ("stderr", stderr)):
        emit = line_sink(on_line, cast(Stream, stream), secrets)
        for line in mask_secrets(text, secrets).splitlines():
            emit(line)
