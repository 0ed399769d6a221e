"""Which runner executes steps: a short engine probe and :func:`get_runner`.

``auto`` picks the Dagger runner when an engine is reachable and the local runner otherwise, in this
order of evidence:

1. an existing Dagger session in the environment (``DAGGER_SESSION_PORT`` + ``DAGGER_SESSION_TOKEN``)
   whose port answers;
2. a configured remote engine (``_EXPERIMENTAL_DAGGER_RUNNER_HOST``): ``tcp://`` and ``unix://``
   addresses are connected to; other schemes (``docker-container://``, ``kube-pod://``...) are taken as
   given;
3. a container runtime the Dagger CLI can start an engine in (``docker``, ``podman``, ``nerdctl`` or
   ``finch`` whose ``info`` answers).

Every check is bounded by ``timeout_s``. The backend (``auto``, ``dagger``, ``local``) and the
limits come from the caller (the ``backend`` and ``dagger_*_timeout_s`` fields of
:class:`adapters.settings.Settings`); nothing here reads the platform's settings itself.

A flow run decides for real with :func:`engine_for_run`: the probe only says that an engine *may*
start; the run then opens its one engine session (CLI download and engine image pull included,
within ``first_run_timeout_s``, default 600 s) and, under ``auto``, falls back to the
local runner with one plain line when that fails. :func:`adapters.dagger.diagnosis.diagnose_engine`
says which part is missing: the container runtime, the Dagger CLI or the engine image.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from adapters.chaos import ChaosRunner, FaultPlan
from adapters.contract import Backend
from adapters.errors import InfrastructureError, InvalidInputError
from adapters.local_runner import LocalRunner
from adapters.redaction import redact_url
from adapters.runner import LineSink, Runner

__all__ = [
    "BackendChoice",
    "EngineProbe",
    "StepRunner",
    "choose_backend",
    "engine_breaker_name",
    "engine_for_run",
    "find_runtime",
    "get_runner",
    "probe_engine",
    "resolve_runner",
]

BackendName = Literal["auto", "dagger", "local"]
_RUNTIMES = ("docker", "podman", "nerdctl", "finch")
_HOW_TO_GET_CONTAINERS = (
    "start Docker (or Podman), or set _EXPERIMENTAL_DAGGER_RUNNER_HOST to a remote engine"
)


@dataclass(frozen=True)
class EngineProbe:
    """What the probe found.

    Attributes:
        reachable: a Dagger engine can be used.
        kind: ``session``, ``remote``, ``runtime`` or ``none``.
        detail: one plain sentence: which engine, or why none.
    """

    reachable: bool
    kind: Literal["session", "remote", "runtime", "none"]
    detail: str


@dataclass(frozen=True)
class BackendChoice:
    """The backend chosen and the one line that says why."""

    backend: Backend
    reason: str
    probe: EngineProbe | None = None


def probe_engine(timeout_s: float = 2.0) -> EngineProbe:
    """Look for a usable Dagger engine, spending at most about ``timeout_s`` per check.

    Examples:
        >>> probe = probe_engine(timeout_s=1.0)
        >>> probe.kind in {"session", "remote", "runtime", "none"}
        True
    """
    port, token = os.environ.get("DAGGER_SESSION_PORT"), os.environ.get("DAGGER_SESSION_TOKEN")
    if port and token:
        if _tcp_answers("127.0.0.1", int(port), timeout_s):
            return EngineProbe(True, "session", f"Dagger session on 127.0.0.1:{port}")
        return EngineProbe(
            False, "none", f"DAGGER_SESSION_PORT={port} is set but nothing answers on that port"
        )
    remote = os.environ.get("_EXPERIMENTAL_DAGGER_RUNNER_HOST")
    if remote:
        return _probe_remote(remote, timeout_s)
    exe, reasons = find_runtime(timeout_s)
    if exe is not None:
        runtime = Path(exe).name
        return EngineProbe(True, "runtime", f"{runtime} is running; Dagger starts its engine there")
    if not reasons:
        reasons.append("no container runtime (docker, podman, nerdctl, finch) is installed")
    return EngineProbe(False, "none", "; ".join(reasons))


@functools.lru_cache(maxsize=8)
def _cached_probe(timeout_s: float, env_key: tuple[str | None, ...]) -> EngineProbe:
    return probe_engine(timeout_s)


def choose_backend(backend: str | None = None, *, timeout_s: float = 2.0) -> BackendChoice:
    """Resolve ``backend`` (default ``auto``) to a concrete backend.

    The probe result is cached per process and per relevant environment, so many steps pay for it once.

    Raises:
        InvalidInputError: the backend name is not one of auto, dagger, local.
    """
    name = (backend or "auto").strip().lower()
    if name not in ("auto", "dagger", "local"):
        raise InvalidInputError(
            f"backend={name!r} is not a backend; use 'auto' (Dagger when an engine is reachable,"
            " else local), 'dagger' or 'local'"
        )
    if name == "local":
        return BackendChoice("local", "Running steps with the local runner (as requested).")
    env_key = tuple(
        os.environ.get(k)
        for k in ("DAGGER_SESSION_PORT", "DAGGER_SESSION_TOKEN", "_EXPERIMENTAL_DAGGER_RUNNER_HOST")
    )
    probe = _cached_probe(timeout_s, env_key)
    if name == "dagger":
        return BackendChoice("dagger", f"Running steps with Dagger ({probe.detail}).", probe)
    if probe.reachable:
        return BackendChoice("dagger", f"Running steps with Dagger ({probe.detail}).", probe)
    return BackendChoice(
        "local",
        f"No Dagger engine reachable ({probe.detail}); running steps with the local runner, without"
        f" container isolation. To use containers, {_HOW_TO_GET_CONTAINERS}.",
        probe,
    )


def get_runner(
    backend: str | None = None,
    *,
    provision_timeout_s: float = 60.0,
    cache_dir: Path | None = None,
) -> Runner:
    """A runner for ``backend``: ``auto`` (the default), ``dagger`` or ``local``.

    Args:
        backend: the backend asked for.
        provision_timeout_s: the Dagger runner's limit on opening a session of its own.
        cache_dir: the local runner's folder of cache volumes (None: its default).

    Examples:
        >>> get_runner("local").backend
        'local'
    """
    choice = choose_backend(backend)
    if choice.backend == "local":
        return LocalRunner(cache_dir=cache_dir)
    from adapters.dagger.runner import DaggerRunner  # imported on demand: dagger is heavy

    return DaggerRunner(provision_timeout_s=provision_timeout_s)


@dataclass(frozen=True)
class StepRunner:
    """A flow run's runner, resolved once and passed to each of its steps.

    Attributes:
        runner: the runner, wrapped in a :class:`~adapters.chaos.ChaosRunner` when ``plan`` is set.
        breaker_name: the engine breaker guarding it (:func:`engine_breaker_name`).
        plan: the run's fault plan, or None.
    """

    runner: Runner
    breaker_name: str
    plan: FaultPlan | None = None

    @property
    def backend(self) -> Backend:
        """The backend the runner executes steps on."""
        return self.runner.backend


def resolve_runner(
    backend: str | None = None,
    *,
    provision_timeout_s: float = 60.0,
    cache_dir: Path | None = None,
    plan: FaultPlan | None = None,
) -> StepRunner:
    """The runner of ``backend`` (:func:`get_runner`) with its engine breaker's name, and the fault
    ``plan`` injected into it when one is given: what a flow run resolves once for all its steps.

    Examples:
        >>> resolve_runner("local").breaker_name
        'engine:local'
    """
    runner = get_runner(backend, provision_timeout_s=provision_timeout_s, cache_dir=cache_dir)
    name = engine_breaker_name(runner.backend)
    return StepRunner(runner if plan is None else ChaosRunner(runner, plan), name, plan)


@contextlib.asynccontextmanager
async def engine_for_run(
    backend: str | None = None,
    *,
    on_line: LineSink | None = None,
    provision_timeout_s: float = 60.0,
    first_run_timeout_s: float = 600.0,
) -> AsyncIterator[BackendChoice]:
    """Choose the backend of one flow run and, for Dagger, hold the run's one engine session.

    With Dagger chosen (asked for, or found by ``auto``'s probe), the run's session is opened here,
    within ``first_run_timeout_s`` (a first run downloads the CLI and pulls the engine image, which
    can take minutes), and every step of the run in this event loop uses it until
    the block ends. If it cannot be opened, ``auto`` falls back to the local runner and says so in
    the choice's one-line reason; an explicit ``dagger`` raises.

    Args:
        backend: ``auto`` (the default), ``dagger`` or ``local``.
        on_line: receives ``("engine", line)`` for the engine's own log lines.
        provision_timeout_s: the runner's limit on opening a session again after a break.
        first_run_timeout_s: the limit on opening the run's session.

    Raises:
        InvalidInputError: the backend name is not valid.
        EngineUnavailableError: ``dagger`` was asked for and no engine could be started.

    Examples:
        >>> import asyncio
        >>> async def run() -> str:
        ...     async with engine_for_run("local") as choice:
        ...         return choice.backend
        >>> asyncio.run(run())
        'local'
    """
    choice = choose_backend(backend)
    if choice.backend != "dagger":
        yield choice
        return
    from adapters.dagger.runner import DaggerRunner  # imported on demand: dagger is heavy

    runner = DaggerRunner(provision_timeout_s=provision_timeout_s)
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(
                runner.session(provision_timeout_s=first_run_timeout_s, on_line=on_line)
            )
        except InfrastructureError as exc:
            asked = (backend or "auto").strip().lower()
            if asked != "auto":
                raise
            why = " ".join(exc.message.split())
            choice = BackendChoice(
                "local",
                f"The Dagger engine could not be started ({why}); running steps with the local"
                " runner, without container isolation.",
                choice.probe,
            )
        yield choice


def engine_breaker_name(backend: Backend) -> str:
    """The name of the breaker guarding the execution target of ``backend``.

    ``engine:local`` for the local runner; for Dagger, one per engine: the remote runner host, the
    session port, or the local container runtime.

    Examples:
        >>> engine_breaker_name("local")
        'engine:local'
    """
    if backend == "local":
        return "engine:local"
    remote = os.environ.get("_EXPERIMENTAL_DAGGER_RUNNER_HOST")
    if remote:
        return f"engine:dagger:{redact_url(remote)}"
    port = os.environ.get("DAGGER_SESSION_PORT")
    if port:
        return f"engine:dagger:session-{port}"
    return "engine:dagger:local"


def _tcp_answers(host: str, port: int, timeout_s: float) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False


def _probe_remote(remote_url: str, timeout_s: float) -> EngineProbe:
    url = urlparse(remote_url)
    remote = redact_url(remote_url)
    if url.scheme == "tcp" and url.hostname and url.port:
        if _tcp_answers(url.hostname, url.port, timeout_s):
            return EngineProbe(True, "remote", f"remote engine at {remote}")
        return EngineProbe(False, "none", f"the remote engine {remote} does not answer")
    if url.scheme == "unix":
        path = url.path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(path)
            return EngineProbe(True, "remote", f"engine socket {path}")
        except OSError as exc:
            return EngineProbe(False, "none", f"the engine socket {path} does not answer ({exc})")
        finally:
            sock.close()
    return EngineProbe(True, "remote", f"remote engine {remote} (not probed for this scheme)")


def find_runtime(timeout_s: float) -> tuple[str | None, list[str]]:
    """The first container runtime (docker, podman, nerdctl, finch, in that order) whose ``info``
    answers within ``timeout_s``, as an executable path (None when none does), and why each
    installed one before it did not.

    Examples:
        >>> exe, reasons = find_runtime(timeout_s=1.0)
        >>> exe is None or bool(exe)
        True
    """
    reasons: list[str] = []
    for name in _RUNTIMES:
        exe = shutil.which(name)
        if exe is None:
            continue
        ok, why = _runtime_answers(exe, timeout_s)
        if ok:
            return exe, reasons
        reasons.append(f"{name} is installed but {why}")
    return None, reasons


def _runtime_answers(exe: str, timeout_s: float) -> tuple[bool, str]:
    try:
        done = subprocess.run(
            [exe, "info"],
            capture_output=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return False, f"'{Path(exe).name} info' did not answer within {timeout_s:g} s"
    except OSError as exc:
        return False, f"it could not be run ({exc.strerror})"
    if done.returncode == 0:
        return True, ""
    return False, "its daemon is not reachable"
