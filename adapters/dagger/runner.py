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
      abandoned at the limit rather than awaited; the CLI process of this run (on Linux the one
      whose stderr is this run's log pipe, elsewhere the new ``dagger session`` child that ``ps``
      lists) and its children are killed so nothing is left behind. A flow run's session gets a
      longer limit for a first run (``AIOP_DAGGER_FIRST_RUN_TIMEOUT_S``).
    * ``StepSpec.timeout_s`` bounds the step's work on the engine (one ``asyncio`` deadline around
      the exec, the reads of its output and the exports): past it the query is cancelled and
      :class:`StepTimeoutError` raised; closing the session stops the container (a shared
      session's engine may run it on until the flow run's session closes).
    * ``execute_timeout_s`` (optional) bounds every single request to the engine.
    * ``close_timeout_s`` bounds closing the session; past it the CLI is killed as above.
    * Retries are off, and so is the SDK's reconnecting GraphQL session (``retry=None``): a dead
      engine is reported at once instead of being re-queried five times (which also surfaced as
      ``tenacity.RetryError``), and one request's broken connection fails only that request, not
      every request of the session in flight (see :mod:`adapters.dagger._shared`). Retrying is
      the caller's policy.

Mounts:
    Dagger mounts are copy-on-write snapshots of the host path, without :data:`MOUNT_EXCLUDE`
    (bytecode). Symbolic links inside a mounted directory are uploaded as links (their targets are
    not followed), as the local runner sees them. ``Mount(writable=False)`` mounts a
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

Errors:
    Every foreign error is translated by :func:`adapters.dagger.errors.translate_error`, from the
    one table :data:`adapters.dagger.errors.ERROR_RULES` (the reference page's table is generated
    from it). Past ``provision_timeout_s`` the session start is :class:`ProvisioningTimeoutError`;
    past ``StepSpec.timeout_s`` the step is :class:`StepTimeoutError`. A non-zero exit is a
    :class:`StepResult` with that exit code (``run_step`` raises :class:`StepFailedError`).

Failures are never cached:
    The exec asks for the default expectation (exit 0). The engine keeps a result whose exit code
    the query allowed in its cache, across sessions, and hands it back for the same container
    definition without running the command (dagger/dagger ``dagql/cache.go``); an error is not
    kept. With ``expect=ANY`` a failure would be such a result, replayed on every retry and every
    later run. So a non-zero exit arrives as ``ExecError`` and becomes the failed StepResult, and
    the next attempt really runs. Exit codes 128-191 (killed by a signal; 137 is usually an
    out-of-memory kill) are results too, with one explaining ``engine`` line.

Image errors are recognised as the engine words them (``failed to resolve image "<normalised ref>"
(platform: ...): <registry's answer>``), the spec's image normalised the same way
(``alpine`` -> ``docker.io/library/alpine:latest``), so any spelling of a reference is classified
by the registry's answer, not by how it was written.

Missing mount sources are found before the engine is contacted, and a declared output the step did
not write, or one that cannot be written on the host, is an :class:`InvalidSpecError`.

The rest of the adapter lives beside it: :mod:`~adapters.dagger.errors` (the error table,
messages, scrubbing), :mod:`~adapters.dagger.session` (hard limits),
:mod:`~adapters.dagger.engine_process` (engine log, CLI) and :mod:`adapters.ownership` (host files).

Traces:
    The SDK sends the current span's ``traceparent`` with every request, and the engine parents
    its spans of that request under it: a run's requests carry the span current around it (the
    attempt's, :mod:`flows.runtime.trace_spans`). The SDK's own telemetry set-up is kept from running
    (:func:`_no_sdk_telemetry`), and a CLI started here inherits a traces-only environment with
    the flow run's ``TRACEPARENT`` (:func:`adapters.tracing.engine_cli_environment`).

Sessions and concurrency:
    Inside :meth:`DaggerRunner.session` (a flow run holds one, see
    :func:`adapters.selection.engine_for_run`) every ``run`` in that event loop shares one isolated
    connection, concurrent runs included; engine log lines then go to the session's ``on_line``,
    a run's own output to the run's. Outside one, each ``run`` opens, uses and closes its own. The
    SDK's global ``dag`` is never used, and a session never crosses event loops, so runs may also
    proceed in several threads with their own loops (see :mod:`adapters.dagger._shared`).

Examples:
    >>> import asyncio
    >>> from adapters import StepSpec
    >>> from adapters.dagger.runner import DaggerRunner
    >>> runner = DaggerRunner(provision_timeout_s=120)
    >>> spec = StepSpec(name="hello", image="alpine:3.20", args=["echo", "hello"])
    >>> result = asyncio.run(runner.run(spec))  # doctest: +SKIP
    >>> result.exit_code, result.stdout  # doctest: +SKIP
    (0, 'hello\\n')
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO, cast

import dagger
import dagger.telemetry

from adapters import tracing
from adapters.contract import Backend, StepResult, StepSpec, mask_secrets, tail
from adapters.dagger import _shared
from adapters.dagger.engine_process import (
    EngineLog,
    ProgressConsole,
    forward_output,
    line_sink,
)
from adapters.dagger.errors import (
    FOREIGN_ERRORS,
    engine_error,
    missing_command,
    scrub,
    signal_hint,
    translate_error,
)
from adapters.dagger.session import check_limits, close_session, open_session, step_deadline
from adapters.errors import (
    EngineConnectionError,
    EngineUnavailableError,
    InvalidSpecError,
)
from adapters.ownership import origin_of, receive
from adapters.ownership._fs import HostMount, check_outputs, host_mounts
from adapters.runner import LineSink

__all__ = ["MOUNT_EXCLUDE", "DaggerRunner"]

#: Left out of every mounted directory: Python bytecode. The engine uploads a mounted directory and
#: keys cached results by its content, so bytecode the host happens to write (a test run, an import)
#: would make an unchanged step run again; the platform's own cache key ignores it too.
MOUNT_EXCLUDE: tuple[str, ...] = ("**/__pycache__", "**/*.pyc", "**/*.pyo")


# ---------------------------------------------------------------------------------------------
def _no_sdk_telemetry() -> None:
    """Keep the SDK's own telemetry set-up from running in this process (tracing is the
    platform's: :mod:`adapters.tracing`).

    ``Connection.__aenter__`` calls ``dagger.telemetry.initialize()``, whose two once-per-process
    configurators, as soon as any ``OTEL_*`` variable is set, write ``OTEL_*`` defaults into
    ``os.environ``, add an exporter per ``OTEL_TRACES_EXPORTER`` entry to the global tracer
    provider (every span exported twice), instrument logging, and with
    ``OTEL_TRACES_EXPORTER=otlp`` but no protocol raise a raw ``RuntimeError`` (no gRPC exporter),
    and attach ``TRACEPARENT`` to the context for good. The client itself makes no spans
    (dagger-io 0.21.11, ``telemetry.py``), so marking both singletons configured loses nothing;
    ``tests/adapters/dagger/test_sdk_telemetry.py`` fails when an SDK upgrade renames them.
    """
    for configurator in (
        dagger.telemetry._DaggerOtelConfigurator,
        dagger.telemetry._DaggerPropagationConfigurator,
    ):
        configurator()._is_configured = True


# The runner
# ---------------------------------------------------------------------------------------------


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

    Examples:
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
        check_limits(
            provision_timeout_s=provision_timeout_s,
            execute_timeout_s=execute_timeout_s,
            close_timeout_s=close_timeout_s,
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
        mounts = host_mounts(spec)
        check_outputs(spec)
        shared = _shared.current()
        if shared is not None:
            shared.secrets.extend(secrets)
            async with shared.lease() as client:
                try:
                    executed = await self._execute(client, spec, mounts, on_line)
                except (EngineConnectionError, EngineUnavailableError):
                    shared.mark_broken(client)
                    raise
        else:
            opened = await self.open_connection(self.provision_timeout_s, on_line, secrets, spec)
            try:
                executed = await self._execute(opened.client, spec, mounts, on_line)
            finally:
                await opened.close()
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

    @contextlib.asynccontextmanager
    async def session(
        self, *, provision_timeout_s: float | None = None, on_line: LineSink | None = None
    ) -> AsyncIterator[None]:
        """Open one engine session that every :meth:`run` in this event loop uses until the end.

        A flow run opens it once; its steps, concurrent ones included, then share one CLI, one
        connection and one schema introspection instead of one each. Runs in other event loops
        (other threads) are not affected. Nested blocks reuse the outer session.

        Args:
            provision_timeout_s: the limit on opening it (default ``provision_timeout_s``); a
                first run may need minutes (CLI download, engine image pull).
            on_line: receives ``("engine", line)`` for each engine log line: the engine cannot
                say which step a line belongs to, so these never go to a step's ``on_line``.

        Raises:
            EngineUnavailableError: no engine could be reached or started.
            ProvisioningTimeoutError: opening took longer than the limit.

        Examples:
            >>> import asyncio
            >>> async def pipeline(runner: DaggerRunner) -> None:
            ...     async with runner.session(provision_timeout_s=600):
            ...         await asyncio.gather(runner.run(spec_a), runner.run(spec_b))  # doctest: +SKIP
        """
        if _shared.current() is not None:
            yield
            return
        secrets: list[str] = []
        limit = provision_timeout_s or self.provision_timeout_s
        opened = await self.open_connection(limit, on_line, secrets, None)
        shared = _shared.SharedSession(
            opened,
            reopen=lambda: self.open_connection(self.provision_timeout_s, on_line, secrets, None),
            secrets=secrets,
            say=line_sink(on_line, "engine", secrets),
        )
        _shared.register(shared)
        try:
            yield
        finally:
            _shared.unregister(shared)
            await shared.aclose()

    async def open_connection(
        self,
        limit: float,
        on_line: LineSink | None,
        secrets: Sequence[str],
        spec: StepSpec | None,
    ) -> _shared.Opened[dagger.Client]:
        """Open a session within ``limit`` seconds; engine log lines go to ``on_line``.

        Used by :mod:`adapters.dagger.llm` too, when no flow run holds a shared session."""
        _no_sdk_telemetry()
        engine_log = EngineLog(asyncio.get_running_loop(), line_sink(on_line, "engine", secrets))
        config = dagger.Config(
            retry=None,
            timeout=dagger.Timeout(self.execute_timeout_s, connect=limit),
            log_output=cast(TextIO, engine_log),
        )
        console = ProgressConsole(engine_log)
        config.console = console
        connection = dagger.Connection(config)
        # A CLI started here inherits this process's environment: traces-only, for the run's trace.
        environment = (
            contextlib.nullcontext()
            if os.environ.get("DAGGER_SESSION_PORT")
            else tracing.engine_cli_environment()
        )
        try:
            async with environment:
                client = await open_session(
                    connection,
                    limit=limit,
                    engine_log=engine_log,
                    console=console,
                    spec=spec,
                )
        except BaseException:
            await engine_log.aclose()
            raise

        async def close() -> None:
            try:
                await close_session(connection, limit=self.close_timeout_s, engine_log=engine_log)
            finally:
                await engine_log.aclose()

        return _shared.Opened(connection, client, close)

    # -- the step --

    async def _execute(
        self,
        client: dagger.Client,
        spec: StepSpec,
        mounts: list[HostMount],
        on_line: LineSink | None,
    ) -> _Executed:
        secrets = spec.secret_values()
        try:
            await _say_resolved_image(client, spec, on_line)
            container = _pipeline(client, spec, mounts)
            # One deadline for the command, the reads of its output and the exports.
            async with step_deadline(spec):
                try:
                    ran = await container.sync()
                except dagger.ExecError as exc:
                    # The default expectation: a non-zero exit is an ExecError, which the engine
                    # does not keep in its cache, so the next attempt runs the command again.
                    return _failed(exc, spec, on_line)
                stdout = await ran.stdout()
                stderr = await ran.stderr()
                forward_output(on_line, secrets, stdout=stdout, stderr=stderr)
                outputs: dict[str, str] = {}
                for source, destination in spec.outputs.items():
                    await _export(ran, spec, source, Path(destination))
                    outputs[source] = str(Path(destination))
            return _Executed(0, stdout, stderr, outputs)
        except FOREIGN_ERRORS as exc:
            scrub(exc, secrets)
            raise translate_error(exc, connected=True, spec=spec) from exc


async def _say_resolved_image(
    client: dagger.Client, spec: StepSpec, on_line: LineSink | None
) -> None:
    """Say which digest a tag resolved to, once per session, so that it can be pinned.

    The engine resolves a tag against its registry once in every session (core/schema/container.go
    ``fromSessionScopeInput``), even when it holds the image; only a digest reference resolves
    without the registry. ``imageRef`` is that resolution (it is the same cached ``from`` call
    the step's pipeline makes, so it costs no second registry request).
    """
    if "@" in spec.image:
        return
    shared = _shared.current()
    if shared is not None:
        if spec.image in shared.images:
            return
        shared.images[spec.image] = ""  # claimed: concurrent steps say it once
    try:
        resolved = await client.container().from_(spec.image).image_ref()
    except BaseException:
        if shared is not None:
            shared.images.pop(spec.image, None)
        raise
    digest = resolved.rpartition("@")[2]
    line = (
        f"image {spec.image} resolved to {resolved} in this engine session; write"
        f" {spec.image}@{digest} to run it without its registry"
    )
    if shared is not None:  # a fact of the run's session: the run's log, like engine lines
        shared.images[spec.image] = resolved
        shared.say(line)
    else:
        line_sink(on_line, "engine", spec.secret_values())(line)


def _failed(exc: dagger.ExecError, spec: StepSpec, on_line: LineSink | None) -> _Executed:
    """The result of a command that exited non-zero, from the engine's ExecError.

    Raises:
        InvalidSpecError: the engine's init could not start ``args[0]`` (it is not in the image).
        EngineConnectionError: the engine reported a failed command without an exit code.
    """
    secrets = spec.secret_values()
    exit_code, stdout, stderr = int(exc.exit_code), str(exc.stdout), str(exc.stderr)
    missing = missing_command(spec, exit_code, stdout, stderr)
    if missing is not None:
        raise missing from exc
    if exit_code < 0:
        scrub(exc, secrets)
        raise engine_error(
            EngineConnectionError, f"the command ended without an exit code ({exc})", spec.name
        ) from exc
    forward_output(on_line, secrets, stdout=stdout, stderr=stderr)
    if spec.requirements and list(exc.command or []) == setup_command(spec):
        line_sink(on_line, "engine", secrets)(
            f"installing the step's requirements ({' '.join(spec.requirements)}) into"
            f" {spec.image} failed (exit {exit_code}); the command itself did not run"
        )
    hint = signal_hint(exit_code)
    if hint:
        line_sink(on_line, "engine", secrets)(hint)
    return _Executed(exit_code, stdout, stderr, {})


#: Where pip keeps downloads while a step image's requirements are installed (a cache volume).
_PIP_CACHE = "/root/.cache/pip"


def setup_command(spec: StepSpec) -> list[str]:
    """The command that installs ``spec.requirements`` into its image (one cached layer)."""
    return ["python", "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
            "--root-user-action=ignore", *spec.requirements]  # fmt: skip


def _pipeline(client: dagger.Client, spec: StepSpec, mounts: list[HostMount]) -> dagger.Container:
    container = client.container().from_(spec.image)
    if spec.requirements:
        # Built once: the engine keeps this layer for the same image and requirements, across
        # runs, so later steps and runs start from it without PyPI (and never race on it).
        container = container.with_mounted_cache(
            _PIP_CACHE, client.cache_volume("aiop-pip-cache")
        ).with_exec(setup_command(spec))
    for name, value in spec.env.items():
        container = container.with_env_variable(name, value)
    for name, secret in spec.secrets.items():
        handle = client.set_secret(
            f"aiop.{spec.name}.{name}.{uuid.uuid4().hex}", secret.get_secret_value()
        )
        container = container.with_secret_variable(name, handle)
    for mount in mounts:
        # no_cache: a host read is cached per client for the session otherwise, and a flow run's
        # steps share one session while earlier steps' outputs change the paths later steps
        # mount (core/schema/host.go). Uncached, it is uploaded again (the engine's file sync
        # sends only what changed) and the exec is still keyed by content, not by the read.
        if mount.is_dir:
            source = client.host().directory(
                str(mount.path), exclude=list(MOUNT_EXCLUDE), no_cache=True
            )
            container = container.with_mounted_directory(
                mount.target, source, read_only=mount.read_only
            )
        else:
            container = container.with_mounted_file(
                mount.target, client.host().file(str(mount.path), no_cache=True)
            )
    for cache_name, target in spec.caches.items():
        container = container.with_mounted_cache(target, client.cache_volume(cache_name))
    if spec.workdir:
        container = container.with_workdir(spec.workdir)
    return container.with_exec(list(spec.args))


async def _export(
    container: dagger.Container, spec: StepSpec, source: str, destination: Path
) -> None:
    """Export ``source`` through the one export path: the engine writes the landing path, then
    the output is put in place under the ownership rules (:func:`adapters.ownership.receive`)."""
    is_dir = await container.exists(source, expected_type=dagger.ExistsType.DIRECTORY_TYPE)
    if not is_dir and not await container.exists(
        source, expected_type=dagger.ExistsType.REGULAR_TYPE
    ):
        raise InvalidSpecError(
            f"exited 0 but wrote nothing at output path {source!r}; make the step write there or"
            " remove the output from the spec",
            step=spec.name,
        )
    with (
        receive(
            destination,
            "directory" if is_dir else "file",
            what=f"output {source!r}",
            origin=origin_of(spec),
            step=spec.name,
        ) as landing,
        host_write_errors(landing),
    ):
        if is_dir:
            await container.directory(source).export(str(landing))
        else:
            await container.file(source).export(str(landing))


#: How the session's client reports a host write that met a storage limit: Go's text of the
#: errno, in the error the engine passes back from the client's filesync (an export is written on
#: the host by the client, engine/engineutil/filesync.go: LocalDirExport, LocalFileExport).
_HOST_WRITE_LIMITS = {
    "no space left on device": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "file too large": errno.EFBIG,
}


@contextlib.contextmanager
def host_write_errors(landing: Path) -> Iterator[None]:
    """Turn an engine error that reports a full host file system into the OSError it stands for,
    so the export path describes it like any other host write (:func:`adapters.ownership.receive`).
    """
    try:
        yield
    except dagger.QueryError as exc:
        text = str(exc).lower()
        for words, code in _HOST_WRITE_LIMITS.items():
            if words in text:
                raise OSError(code, os.strerror(code), str(landing)) from exc
        raise
