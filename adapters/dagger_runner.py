"""Run a step in a container through a Dagger engine: the one module that imports ``dagger``.

:class:`DaggerRunner` turns a :class:`~adapters.contract.StepSpec` into one Dagger pipeline
(``container().from_(image)``, env, secrets, mounts, caches, workdir, ``with_exec``) on an isolated
connection of its own, and returns a plain :class:`~adapters.contract.StepResult`. Nothing it
returns or raises is a Dagger type: every foreign error is translated once, here, by
:func:`translate_error`, with ``raise ... from exc``.

Which engine:
    The SDK's own environment handling decides, untouched by this module. With
    ``DAGGER_SESSION_PORT`` and ``DAGGER_SESSION_TOKEN`` set (inside ``dagger run``, or any
    existing session) the SDK connects to ``http://127.0.0.1:$PORT/query`` and provisions nothing.
    Otherwise it starts ``dagger session`` (``_EXPERIMENTAL_DAGGER_CLI_BIN``, or a CLI it
    downloads), and the CLI honours ``_EXPERIMENTAL_DAGGER_RUNNER_HOST`` for a remote engine
    (``tcp://``, ``unix://``, ``kube-pod://``, ``docker-container://`` ...). Host paths (mount
    sources, output destinations) are always paths on the machine running this code: the session
    carries them to a remote engine.

Limits:
    * ``provision_timeout_s`` bounds starting and connecting (CLI start, introspection, version
      check). The SDK waits for the CLI in a thread that cannot be cancelled, so the attempt is
      abandoned at the limit rather than awaited; on Linux the CLI process of this run (the one
      whose stderr is this run's log pipe) and its children are killed so nothing is left behind.
    * ``StepSpec.timeout_s`` bounds the command (``asyncio`` timeout around the exec and the reads
      of its exit code and output): past it the query is cancelled and :class:`StepTimeoutError`
      raised; closing the session stops the container.
    * ``execute_timeout_s`` (optional) bounds every single request to the engine.
    * ``close_timeout_s`` bounds closing the session; past it the CLI is killed as above.
    * Retries are off (``Retry(connect=False, execute=False)``): a dead engine is reported at once
      instead of being re-queried five times (which also surfaced as ``tenacity.RetryError``).
      Retrying is the caller's policy.

Mounts:
    Dagger mounts are copy-on-write snapshots of the host path. ``Mount(writable=False)`` mounts a
    directory read-only; ``writable=True`` lets the step write, but those changes stay inside the
    container: list the path in ``outputs`` to bring results back. A file mount cannot be made
    read-only by Dagger, and is copy-on-write as well.

Outputs:
    Only after exit 0, each ``container path -> host path`` is exported atomically: the engine
    writes a sibling temporary path, which then replaces the destination (an existing directory is
    renamed away first and removed after), so a crash never leaves a half-written output under the
    final name. Each output is atomic on its own, not the set of them.

Secrets:
    Each secret goes through ``set_secret`` under a unique name and reaches the step with
    ``with_secret_variable``, never as a plain environment variable. Secret values are masked in
    the result's output, in every line given to ``on_line``, and in error messages (including the
    messages of the chained foreign exceptions).

Errors (:data:`ERROR_RULES`, first match wins; "connecting" means before the session is up)::

    foreign error                                connecting                running
    dagger.ExecError                             EngineUnavailableError    StepFailedError (1)
    dagger.QueryError (image cannot be pulled,   EngineUnavailableError    InvalidSpecError
      command or host path missing)
    dagger.QueryError (anything else)            EngineUnavailableError    EngineConnectionError
    dagger.InvalidQueryError                     EngineUnavailableError    EngineConnectionError
    dagger.ClientConnectionError                 EngineUnavailableError    EngineConnectionError
    dagger.TransportError                        EngineUnavailableError    EngineConnectionError
    dagger.ProvisionError (Download/Session)     EngineUnavailableError    EngineUnavailableError
    tenacity.RetryError                          EngineUnavailableError    EngineConnectionError
    gql / httpx transport errors                 EngineUnavailableError    EngineConnectionError
    ConnectionRefusedError                       EngineUnavailableError    EngineUnavailableError
    other OSError                                EngineUnavailableError    EngineConnectionError
    (no answer within provision_timeout_s)       ProvisioningTimeoutError  -
    (step past StepSpec.timeout_s)               -                         StepTimeoutError

    (1) run() asks for ``expect=ANY`` and returns a failing command as a StepResult; an ExecError
        that still arrives becomes a StepResult too. translate_error() alone gives StepFailedError.

Missing mount sources are found before the engine is contacted, and a declared output the step did
not write, or one that cannot be written on the host, is an :class:`InvalidSpecError`.

Concurrency:
    Each ``run`` opens, uses and closes its own connection (never the SDK's global ``dag``), so
    runs may proceed concurrently in one event loop or in several threads with their own loops.

Example:
    >>> import asyncio
    >>> from adapters import StepSpec
    >>> from adapters.dagger_runner import DaggerRunner
    >>> runner = DaggerRunner(provision_timeout_s=120)
    >>> spec = StepSpec(name="hello", image="alpine:3.20", args=["echo", "hello"])
    >>> result = asyncio.run(runner.run(spec))  # doctest: +SKIP
    >>> result.exit_code, result.stdout  # doctest: +SKIP
    (0, 'hello\\n')
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import io
import logging
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TextIO, cast

import dagger
import gql.transport.exceptions as gql_errors
import graphql
import httpx
import rich.console
import rich.live
import tenacity
from dagger.mod._exceptions import ModuleError

from adapters.contract import Backend, StepResult, StepSpec, mask_secrets, tail
from adapters.errors import (
    AiopError,
    EngineConnectionError,
    EngineUnavailableError,
    InvalidInputError,
    InvalidSpecError,
    ProvisioningTimeoutError,
    StepFailedError,
    StepTimeoutError,
)
from adapters.runner import LineSink, Stream

__all__ = ["ERROR_RULES", "DaggerRunner", "ErrorRule", "translate_error"]

logger = logging.getLogger(__name__)

#: How long to wait for the last engine log lines after the session closed.
_LOG_DRAIN_S = 0.5
#: Engine log lines kept for error messages.
_LOG_TAIL_LINES = 5

_ENGINE_HINT = (
    "start Docker (the Dagger CLI runs its engine there), or point DAGGER_SESSION_PORT /"
    " _EXPERIMENTAL_DAGGER_RUNNER_HOST at a running engine"
)


# ---------------------------------------------------------------------------------------------
# Error translation
# ---------------------------------------------------------------------------------------------


class ErrorRule(NamedTuple):
    """How one foreign exception class is translated (matched with ``isinstance``, first wins).

    Attributes:
        foreign: the foreign exception class.
        connecting: the platform error while the session is being set up.
        running: the platform error once the session is up.
    """

    foreign: type[BaseException]
    connecting: type[AiopError]
    running: type[AiopError]


_Unavailable, _Broken = EngineUnavailableError, EngineConnectionError

#: The whole translation table, most specific class first (see the module docstring).
ERROR_RULES: tuple[ErrorRule, ...] = (
    # A failed command; with expect=ANY the runner returns it as a StepResult before this applies.
    ErrorRule(dagger.ExecError, _Unavailable, StepFailedError),
    # The engine refused a query; InvalidSpecError when it names the image or a mount source.
    ErrorRule(dagger.QueryError, _Unavailable, _Broken),
    # The SDK could not build a query against the engine's schema (version skew).
    ErrorRule(dagger.InvalidQueryError, _Unavailable, _Broken),
    # No session: closed port, bad token, failed introspection.
    ErrorRule(dagger.ClientConnectionError, _Unavailable, _Broken),
    # The HTTP exchange broke: engine died, connection dropped, request timed out.
    ErrorRule(dagger.TransportError, _Unavailable, _Broken),
    ErrorRule(dagger.ClientError, _Unavailable, _Broken),
    # Provisioning: the CLI could not be downloaded or could not start a session.
    ErrorRule(dagger.DownloadError, _Unavailable, _Unavailable),
    ErrorRule(dagger.SessionError, _Unavailable, _Unavailable),
    ErrorRule(dagger.ProvisionError, _Unavailable, _Unavailable),
    # Module-runtime errors (dagger.mod) are never raised to a client; kept so nothing escapes.
    ErrorRule(ModuleError, _Unavailable, _Broken),
    ErrorRule(dagger.DaggerError, _Unavailable, _Broken),
    # Retries gave up: only with the SDK's retries on, which this runner turns off.
    ErrorRule(tenacity.RetryError, _Unavailable, _Broken),
    # Transport and protocol errors the SDK did not wrap.
    ErrorRule(gql_errors.TransportError, _Unavailable, _Broken),
    ErrorRule(httpx.HTTPError, _Unavailable, _Broken),
    ErrorRule(graphql.GraphQLError, _Unavailable, _Broken),
    # Nothing listens where the engine should be; other OS errors the SDK let through.
    ErrorRule(ConnectionRefusedError, _Unavailable, _Unavailable),
    ErrorRule(OSError, _Unavailable, _Broken),
)

_FOREIGN: tuple[type[BaseException], ...] = tuple(rule.foreign for rule in ERROR_RULES)

_PULL_FAILURES = (
    "pull access denied",
    "repository does not exist",
    "manifest unknown",
    "name unknown",
    ": not found",
)


def translate_error(
    exc: BaseException, *, connected: bool, spec: StepSpec | None = None
) -> AiopError:
    """The platform error for a foreign exception, secret values masked in its message.

    Args:
        exc: the foreign exception (a Dagger, gql, httpx, tenacity or socket error).
        connected: whether the engine session was established when it happened.
        spec: the step, to name it, mask its secrets and recognise its own inputs in messages.

    Returns:
        The :mod:`adapters.errors` instance to raise ``from exc``.

    Example:
        >>> import dagger
        >>> translate_error(dagger.TransportError("boom"), connected=True).__class__.__name__
        'EngineConnectionError'
    """
    secrets = spec.secret_values() if spec else []
    step = spec.name if spec else None
    detail = mask_secrets(_describe(exc), secrets)
    rule = next((r for r in ERROR_RULES if isinstance(exc, r.foreign)), None)
    target: type[AiopError] = EngineConnectionError if connected else EngineUnavailableError
    if rule is not None:
        target = rule.running if connected else rule.connecting

    if target is StepFailedError and isinstance(exc, dagger.ExecError):
        exit_code = int(exc.exit_code)
        return StepFailedError(
            f"the command exited {exit_code}",
            step=step or "?",
            exit_code=exit_code,
            stderr_tail=tail(mask_secrets(str(exc.stderr), secrets)),
            transient_exit=spec is not None and exit_code in spec.transient_exit_codes,
        )
    if connected and spec is not None and isinstance(exc, dagger.QueryError):
        user_error = _user_input_error(detail, spec)
        if user_error is not None:
            return user_error
    if issubclass(target, EngineUnavailableError):
        return target(f"no Dagger engine could be used ({detail}); {_ENGINE_HINT}", step=step)
    return target(f"the Dagger engine failed while the step ran ({detail})", step=step)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, tenacity.RetryError) and exc.last_attempt.failed:
        last = exc.last_attempt.exception()
        return f"retries exhausted, last error: {_describe(last) if last else 'unknown'}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _user_input_error(detail: str, spec: StepSpec) -> InvalidSpecError | None:
    lowered = detail.lower()
    if "invalid reference format" in lowered or (
        spec.image.lower() in lowered and any(marker in lowered for marker in _PULL_FAILURES)
    ):
        return InvalidSpecError(
            f"image {spec.image!r} cannot be pulled ({detail}); check the image name and tag, and"
            " log in to the registry if it is private",
            step=spec.name,
        )
    if "executable file not found" in lowered:
        return InvalidSpecError(
            f"the command {spec.args[0]!r} does not exist in image {spec.image!r} ({detail}); fix"
            " args[0] or use an image that has it",
            step=spec.name,
        )
    if "no such file or directory" in lowered:
        for host in spec.mounts:
            if host in detail or str(Path(host).resolve()) in detail:
                return InvalidSpecError(
                    f"mount source {host!r} is missing ({detail}); create it or fix the path",
                    step=spec.name,
                )
    return None


def _scrub(exc: BaseException, secrets: Sequence[str]) -> None:
    """Mask secret values inside ``exc`` and its chain, so a printed traceback shows none."""
    if not secrets:
        return
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.args = tuple(_masked(a, secrets) for a in current.args)
        for name in ("message", "stdout", "stderr", "command", "errors"):
            value = getattr(current, name, None)
            if value is not None:
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(current, name, _masked(value, secrets))
        if isinstance(current, tenacity.RetryError) and current.last_attempt.failed:
            last = current.last_attempt.exception()
            if last is not None:
                pending.append(last)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _masked(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return mask_secrets(value, secrets)
    if isinstance(value, list):
        return [_masked(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v, secrets) for k, v in value.items()}
    if isinstance(getattr(value, "message", None), str):  # the SDK's QueryErrorValue
        with contextlib.suppress(AttributeError, TypeError):
            value.message = mask_secrets(value.message, secrets)
            value.extensions = _masked(value.extensions, secrets)
    return value


# ---------------------------------------------------------------------------------------------
# Engine log: the stream given to the SDK as log_output
# ---------------------------------------------------------------------------------------------


class _EngineLog(io.TextIOBase):
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
        """Kill the CLI this run started (and its children); Linux only. Returns their pids."""
        if self._inode is None:
            return []
        pids = _processes_with_stderr_pipe(self._inode)
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
        if not line:
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


class _ProgressConsole(rich.console.Console):
    """The console of the SDK's progress display, writing to the engine log.

    The SDK starts a live status display (with a refresh thread) while provisioning and stops it
    only when the session comes up; this console remembers its displays so that a failed or
    abandoned start can stop them too, instead of leaking a thread per failure.
    """

    def __init__(self, engine_log: _EngineLog) -> None:
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


def _engine_said(engine_log: _EngineLog, spec: StepSpec) -> str:
    """`` (last engine output: ...)``, masked, or nothing when the engine said nothing."""
    engine_log.pump()
    said = mask_secrets(" | ".join(engine_log.last_lines), spec.secret_values())
    return f" (last engine output: {said})" if said else ""


def _processes_with_stderr_pipe(inode: int) -> list[int]:
    """Our child processes whose stderr is the pipe ``inode``, and their descendants (Linux)."""
    proc = Path("/proc")
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


def _sink(
    on_line: LineSink | None, stream: Stream, secrets: Sequence[str]
) -> Callable[[str], None]:
    def emit(line: str) -> None:
        if on_line is None:
            return
        try:
            on_line(stream, mask_secrets(line, secrets))
        except Exception:
            logger.exception("on_line raised for a %s line; line dropped", stream)

    return emit


# ---------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------

_BACKGROUND: set[asyncio.Task[Any]] = set()


class _Executed(NamedTuple):
    exit_code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]


class DaggerRunner:
    """Runs each step in a container on a Dagger engine, one isolated connection per run.

    Args:
        provision_timeout_s: hard limit on starting or connecting to the engine (seconds).
        execute_timeout_s: limit on every single request to the engine; None waits as long as
            the step's own ``timeout_s`` allows.
        close_timeout_s: limit on closing the session (the CLI is killed past it).

    Raises:
        InvalidInputError: a limit is not a positive number.

    Example:
        >>> runner = DaggerRunner(provision_timeout_s=30)
        >>> runner.backend
        'dagger'
    """

    backend: Backend = "dagger"

    def __init__(
        self,
        *,
        provision_timeout_s: float = 60.0,
        execute_timeout_s: float | None = None,
        close_timeout_s: float = 30.0,
    ) -> None:
        limits = {
            "provision_timeout_s": provision_timeout_s,
            "execute_timeout_s": execute_timeout_s,
            "close_timeout_s": close_timeout_s,
        }
        for name, value in limits.items():
            if value is not None and not value > 0:
                raise InvalidInputError(
                    f"{name} must be a positive number of seconds, not {value!r}"
                )
        self.provision_timeout_s = provision_timeout_s
        self.execute_timeout_s = execute_timeout_s
        self.close_timeout_s = close_timeout_s

    def __repr__(self) -> str:
        return (
            f"DaggerRunner(provision_timeout_s={self.provision_timeout_s!r},"
            f" execute_timeout_s={self.execute_timeout_s!r},"
            f" close_timeout_s={self.close_timeout_s!r})"
        )

    async def run(
        self, spec: StepSpec, *, attempt: int = 1, on_line: LineSink | None = None
    ) -> StepResult:
        """Run ``spec`` once on a fresh engine session; a non-zero exit is returned, not raised.

        Args:
            spec: the step.
            attempt: which attempt this is (copied into the result).
            on_line: called with ``("engine", line)`` for each engine log line as it arrives, and
                with ``("stdout" | "stderr", line)`` for each output line once the command ended;
                secret values masked.

        Returns:
            The step's result: exit code, masked output tails, exported outputs, and
            ``duration_s``, the wall time of the whole run (session setup and exports included).

        Raises:
            InvalidSpecError: a mount source is missing, the image cannot be pulled, or a declared
                output was not produced.
            EngineUnavailableError: no engine could be reached or started.
            ProvisioningTimeoutError: starting or reaching the engine took longer than
                ``provision_timeout_s``.
            EngineConnectionError: the engine or the connection broke during the step.
            StepTimeoutError: the command ran longer than ``spec.timeout_s``.
        """
        started = time.monotonic()
        secrets = spec.secret_values()
        mounts = _check_mounts(spec)
        engine_log = _EngineLog(asyncio.get_running_loop(), _sink(on_line, "engine", secrets))
        config = dagger.Config(
            retry=dagger.Retry(connect=False, execute=False),
            timeout=dagger.Timeout(self.execute_timeout_s, connect=self.provision_timeout_s),
            log_output=cast(TextIO, engine_log),
        )
        console = _ProgressConsole(engine_log)
        config.console = console
        connection = dagger.Connection(config)
        try:
            client = await self._connect(connection, engine_log, console, spec)
            try:
                executed = await self._execute(client, spec, mounts, on_line)
            finally:
                await self._disconnect(connection, engine_log)
        finally:
            await engine_log.aclose()
        return StepResult(
            step=spec.name,
            exit_code=executed.exit_code,
            stdout=tail(mask_secrets(executed.stdout, secrets)),
            stderr=tail(mask_secrets(executed.stderr, secrets)),
            duration_s=time.monotonic() - started,
            outputs=executed.outputs,
            backend=self.backend,
            attempt=attempt,
        )

    # -- session --

    async def _connect(
        self,
        connection: dagger.Connection,
        engine_log: _EngineLog,
        console: _ProgressConsole,
        spec: StepSpec,
    ) -> dagger.Client:
        task = asyncio.ensure_future(connection.__aenter__())
        task.add_done_callback(lambda _: engine_log.spawn_over())
        try:
            done, _ = await asyncio.wait({task}, timeout=self.provision_timeout_s)
        except asyncio.CancelledError:
            _abandon(task, connection, engine_log)
            console.stop_displays()
            raise
        if not done:
            _abandon(task, connection, engine_log)
            console.stop_displays()
            raise ProvisioningTimeoutError(
                f"the Dagger engine was not ready within provision_timeout_s="
                f"{self.provision_timeout_s:g} s; the attempt was abandoned"
                f"{_engine_said(engine_log, spec)}. If the engine is starting for the first time,"
                f" raise the limit; else {_ENGINE_HINT}",
                step=spec.name,
            )
        try:
            return task.result()
        except _FOREIGN as exc:
            console.stop_displays()
            _scrub(exc, spec.secret_values())
            error = translate_error(exc, connected=False, spec=spec)
            error.message += _engine_said(engine_log, spec)
            error.args = (error.message,)
            raise error from exc

    async def _disconnect(self, connection: dagger.Connection, engine_log: _EngineLog) -> None:
        task = asyncio.ensure_future(connection.__aexit__(None, None, None))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.close_timeout_s)
        except asyncio.CancelledError:
            engine_log.kill_session_processes()
            task.add_done_callback(_retrieve)
            raise
        if not done:
            logger.warning(
                "closing the Dagger session took longer than %g s; killing its CLI",
                self.close_timeout_s,
            )
            engine_log.kill_session_processes()
            task.add_done_callback(_retrieve)
            return
        error = task.exception()
        if error is not None:
            # The step's outcome is already known; a session that closes badly does not change it.
            logger.warning("closing the Dagger session failed: %s", _describe(error))

    # -- the step --

    async def _execute(
        self,
        client: dagger.Client,
        spec: StepSpec,
        mounts: list[tuple[Path, str, bool, bool]],
        on_line: LineSink | None,
    ) -> _Executed:
        secrets = spec.secret_values()
        try:
            container = _pipeline(client, spec, mounts)
            ran: dagger.Container | None = None
            scope = asyncio.timeout(spec.timeout_s)
            try:
                async with scope:
                    ran = await container.sync()
                    exit_code = await ran.exit_code()
                    stdout = await ran.stdout()
                    stderr = await ran.stderr()
            except TimeoutError as exc:
                if not scope.expired():
                    raise
                raise StepTimeoutError(
                    f"the command ran longer than timeout_s={spec.timeout_s:g} s and was stopped",
                    step=spec.name,
                    timeout_s=spec.timeout_s,
                ) from exc
            except dagger.ExecError as exc:  # not expected with expect=ANY, but it is a result
                ran = None
                exit_code, stdout, stderr = int(exc.exit_code), str(exc.stdout), str(exc.stderr)

            for stream, text in (("stdout", stdout), ("stderr", stderr)):
                emit = _sink(on_line, cast(Stream, stream), secrets)
                for line in mask_secrets(text, secrets).splitlines():
                    emit(line)

            outputs: dict[str, str] = {}
            if exit_code == 0 and ran is not None:
                for source, destination in spec.outputs.items():
                    await _export(ran, spec, source, Path(destination))
                    outputs[source] = str(Path(destination))
            return _Executed(exit_code, stdout, stderr, outputs)
        except _FOREIGN as exc:
            _scrub(exc, secrets)
            raise translate_error(exc, connected=True, spec=spec) from exc


def _check_mounts(spec: StepSpec) -> list[tuple[Path, str, bool, bool]]:
    """(absolute host path, target, is a directory, read-only) per mount; missing -> InvalidSpecError."""
    checked = []
    for host, mount in spec.mounts.items():
        path = Path(host).expanduser().resolve()
        if not path.exists():
            raise InvalidSpecError(
                f"mount source {host!r} does not exist on this host; create it or fix the path",
                step=spec.name,
            )
        checked.append((path, mount.target, path.is_dir(), not mount.writable))
    return checked


def _pipeline(
    client: dagger.Client, spec: StepSpec, mounts: list[tuple[Path, str, bool, bool]]
) -> dagger.Container:
    container = client.container().from_(spec.image)
    for name, value in spec.env.items():
        container = container.with_env_variable(name, value)
    for name, secret in spec.secrets.items():
        handle = client.set_secret(
            f"aiop.{spec.name}.{name}.{uuid.uuid4().hex}", secret.get_secret_value()
        )
        container = container.with_secret_variable(name, handle)
    for path, target, is_dir, read_only in mounts:
        if is_dir:
            source = client.host().directory(str(path))
            container = container.with_mounted_directory(target, source, read_only=read_only)
        else:
            container = container.with_mounted_file(target, client.host().file(str(path)))
    for cache_name, target in spec.caches.items():
        container = container.with_mounted_cache(target, client.cache_volume(cache_name))
    if spec.workdir:
        container = container.with_workdir(spec.workdir)
    return container.with_exec(list(spec.args), expect=dagger.ReturnType.ANY)


async def _export(
    container: dagger.Container, spec: StepSpec, source: str, destination: Path
) -> None:
    """Export ``source`` to ``destination`` through a sibling temporary path, then swap it in."""
    if await container.exists(source, expected_type=dagger.ExistsType.DIRECTORY_TYPE):
        is_dir = True
    elif await container.exists(source, expected_type=dagger.ExistsType.REGULAR_TYPE):
        is_dir = False
    else:
        raise InvalidSpecError(
            f"exited 0 but wrote nothing at output path {source!r}; make the step write there or"
            " remove the output from the spec",
            step=spec.name,
        )
    destination = destination.expanduser().absolute()
    token = uuid.uuid4().hex[:12]
    landing = destination.with_name(f".{destination.name}.aiop-tmp-{token}")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            await container.directory(source).export(str(landing))
        else:
            await container.file(source).export(str(landing))
        _swap_in(landing, destination, token)
    except OSError as exc:  # the host side: our own file operations, not the engine
        raise InvalidSpecError(
            f"cannot write output {source!r} to {str(destination)!r} ({exc}); make the"
            " destination's folder writable or choose another path",
            step=spec.name,
        ) from exc
    finally:
        _remove(landing)


def _swap_in(landing: Path, destination: Path, token: str) -> None:
    """Rename ``landing`` to ``destination``; a directory in the way is renamed aside first."""
    in_the_way = destination.exists() or destination.is_symlink()
    real_dir = destination.is_dir() and not destination.is_symlink()
    if not (in_the_way and (real_dir or landing.is_dir())):
        landing.replace(destination)  # atomic, also over an existing file or symlink
        return
    aside = destination.with_name(f".{destination.name}.aiop-old-{token}")
    destination.replace(aside)
    try:
        landing.replace(destination)
    except OSError:
        aside.replace(destination)
        raise
    _remove(aside)


def _remove(path: Path) -> None:
    """Best-effort removal of a temporary path (file, symlink or directory)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _abandon(
    task: asyncio.Task[Any], connection: dagger.Connection, engine_log: _EngineLog
) -> None:
    """Stop waiting for a connection attempt: cancel it, kill its CLI, close it if it still opens."""
    task.cancel()
    engine_log.kill_session_processes()

    def finished(done: asyncio.Task[Any]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        closing = asyncio.ensure_future(connection.__aexit__(None, None, None))
        _BACKGROUND.add(closing)
        closing.add_done_callback(_retrieve)

    task.add_done_callback(finished)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Consume an abandoned task's outcome (so asyncio does not log it as never retrieved)."""
    _BACKGROUND.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.debug(
            "abandoned Dagger task ended with %s", _describe(cast(BaseException, task.exception()))
        )
