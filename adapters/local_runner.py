"""The local runner: a spec's command as a host subprocess, same contract, no isolation.

How container paths map to host paths (the same spec gives the same outputs on both runners):

| spec field | container path | host path used by the local runner |
| --- | --- | --- |
| ``mounts`` | the mount target | the host path itself (read-only is *not* enforced) |
| ``outputs`` | the output source | a private staging folder, moved to the host path atomically after exit 0 |
| ``caches`` | the cache target | ``<cache_dir>/<name>`` (default ``~/.cache/aiop/caches/<name>``) |
| ``workdir`` | the working directory | its mapped host path, else a private scratch folder |

Every argument and environment value that names one of those container paths is rewritten
(:class:`adapters.paths.PathMap`). A first argument of ``python`` or ``python3`` runs the interpreter
that runs the flow, which has the step dependencies installed. The environment is the spec's ``env`` and
``secrets`` over a minimal base (``PATH``, ``HOME``, ``LANG``, ``TZ``, ``TMPDIR``), as in a container,
and, while the run is traced, ``TRACEPARENT`` of the current attempt span and the traces-only
``OTEL_EXPORTER_OTLP_TRACES_*`` variables (:func:`adapters.tracing.process_environment`; the exporter's
headers are masked in the step's output like its secrets); the image is ignored. The timeout kills the whole process group.

A step's process group dies with the process that started it: a watcher process
(:mod:`adapters._reaper`) kills the groups of running steps when that process ends, even by SIGKILL
(an OOM kill, ``kill -9``). If the watcher cannot be started, a killed run's step keeps running until
it ends on its own. Every staging folder
(``.aiop-STEP.aiop-tmp-HOST-PID-TOKEN`` in the temporary folder, ``.NAME.aiop-tmp-...`` beside a
destination) names the process that made it, and the next run removes those of processes that no
longer run (:mod:`adapters.ownership._staging`).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import os
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from adapters import tracing
from adapters._reaper import forget, watch
from adapters.contract import OUTPUT_TAIL_CHARS, Backend, StepResult, StepSpec, tail
from adapters.errors import InfrastructureError, InvalidSpecError, StepTimeoutError
from adapters.ownership import Kind, origin_of, receive
from adapters.ownership._fs import check_outputs, host_mounts, move_into
from adapters.ownership._space import tree_size
from adapters.ownership._staging import remove_path, staging_path, sweep
from adapters.paths import PathMap
from adapters.redaction import SecretMasker
from adapters.runner import LineSink, Stream

__all__ = ["LINE_SPLIT_MARKER", "MAX_LINE_CHARS", "LocalRunner", "cache_root"]

#: The longest piece of an output line given to ``on_line``; a longer line is split into pieces.
MAX_LINE_CHARS = 64 * 1024
#: Ends every piece of a split line but the last, so a reader sees the line goes on.
LINE_SPLIT_MARKER = " [line continues]"

_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
_PYTHONS = {"python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}"}
_KILL_GRACE_S = 2.0
_READ_BYTES = 64 * 1024


def cache_root(configured: Path | None = None) -> Path:
    """Where the local runner keeps cache volumes: ``configured`` (the ``cache_dir`` setting) or
    ``~/.cache/aiop/caches``."""
    return configured if configured is not None else Path.home() / ".cache" / "aiop" / "caches"


class LocalRunner:
    """Runs a :class:`~adapters.contract.StepSpec` as a host subprocess.

    Examples:
        >>> import asyncio
        >>> from adapters import StepSpec
        >>> spec = StepSpec(name="hi", image="python:3.12-slim", args=["python", "-c", "print(2)"])
        >>> asyncio.run(LocalRunner().run(spec)).stdout
        '2\\n'
    """

    backend: Backend = "local"

    def __init__(
        self, *, kill_grace_s: float = _KILL_GRACE_S, cache_dir: Path | None = None
    ) -> None:
        self._kill_grace_s = kill_grace_s
        self._cache_root = cache_root(cache_dir)

    async def run(
        self, spec: StepSpec, *, attempt: int = 1, on_line: LineSink | None = None
    ) -> StepResult:
        """Run ``spec`` once; a non-zero exit is returned, not raised."""
        host_mounts(spec)
        check_outputs(spec)
        with _scratch(spec.name) as scratch:
            staged, path_map, cwd = _prepare(spec, scratch, self._cache_root)
            on_line = _in_user_paths(on_line, spec, staged)
            args = [path_map.rewrite(a) for a in spec.args]
            if args[0] in _PYTHONS:
                args[0] = sys.executable
            env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
            # The run's trace (TRACEPARENT of the current attempt span, where spans go), under
            # the spec's own variables: never part of the spec, whose content is the cache key.
            traced = tracing.process_environment()
            env.update(traced.variables)
            env.update({k: path_map.rewrite(v) for k, v in spec.env.items()})
            env.update({k: v.get_secret_value() for k, v in spec.secrets.items()})
            started = time.monotonic()
            masker = SecretMasker([*spec.secret_values(), *traced.secrets])
            exit_code, out, err = await self._execute(spec, args, env, cwd, masker, on_line)
            duration = time.monotonic() - started
            outputs = _export(spec, staged) if exit_code == 0 else {}
        return StepResult(
            step=spec.name,
            exit_code=exit_code,
            stdout=tail(out.masked()),
            stderr=tail(err.masked()),
            duration_s=round(duration, 6),
            outputs=outputs,
            backend="local",
            attempt=attempt,
        )

    async def _execute(
        self,
        spec: StepSpec,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        masker: SecretMasker,
        on_line: LineSink | None,
    ) -> tuple[int, _Tail, _Tail]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise InvalidSpecError(
                f"cannot start {masker.mask(spec.args[0])!r} on this host ({exc.strerror});"
                " install it, fix the command, or run the step with the Dagger runner",
                step=spec.name,
            ) from exc
        except OSError as exc:
            raise InfrastructureError(
                f"the host could not start the step's process: {exc.strerror or exc}",
                step=spec.name,
            ) from exc
        watch(proc.pid)  # its own session: the group id is the pid
        out, err = _Tail(masker), _Tail(masker)
        stdout, stderr = proc.stdout, proc.stderr
        assert stdout is not None and stderr is not None

        async def finish() -> int:
            await asyncio.gather(
                _pump(stdout, "stdout", out, masker, on_line),
                _pump(stderr, "stderr", err, masker, on_line),
            )
            return await proc.wait()

        try:
            exit_code = await asyncio.wait_for(finish(), timeout=spec.timeout_s)
        except TimeoutError:
            await self._kill(proc)
            raise StepTimeoutError(
                f"ran longer than timeout_s={spec.timeout_s:g} s and was killed; raise timeout_s if"
                " the step needs longer, or find out why it hung",
                step=spec.name,
                timeout_s=spec.timeout_s,
            ) from None
        except BaseException:
            await asyncio.shield(self._kill(proc))
            raise
        forget(proc.pid)
        return exit_code, out, err

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        try:
            if proc.returncode is not None:
                return
            for sig, wait in ((signal.SIGTERM, self._kill_grace_s), (signal.SIGKILL, None)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    await asyncio.wait_for(proc.wait(), timeout=wait)
                    return
                except TimeoutError:
                    continue
        finally:
            forget(proc.pid)


_SWEPT: set[str] = set()


@contextlib.contextmanager
def _scratch(step: str) -> Iterator[Path]:
    """A private staging folder for one run, named so a later run can remove it if this one dies."""
    base = Path(tempfile.gettempdir())
    if str(base) not in _SWEPT:  # once per process: stale scratch folders of killed runs
        _SWEPT.add(str(base))
        sweep(base)
    folder = staging_path(base / f"aiop-{step}")
    folder.mkdir(mode=0o700)
    try:
        yield folder
    finally:
        remove_path(folder)


class _Tail:
    """The last pieces of one output stream, kept unmasked and masked as a whole when asked.

    Pieces begin at a line start or at a cut that splits no secret, so dropping the oldest ones
    never leaves half a secret at the start.
    """

    def __init__(self, masker: SecretMasker, keep_chars: int = 2 * OUTPUT_TAIL_CHARS) -> None:
        self._masker = masker
        self._keep = keep_chars
        self._pieces: deque[str] = deque()
        self._chars = 0

    def append(self, piece: str) -> None:
        self._pieces.append(piece)
        self._chars += len(piece)
        while len(self._pieces) > 1 and self._chars - len(self._pieces[0]) >= self._keep:
            self._chars -= len(self._pieces.popleft())

    def masked(self) -> str:
        return self._masker.mask("".join(self._pieces))


class _LineSplitter:
    """Turns decoded output into lines, cutting any longer than :data:`MAX_LINE_CHARS` into
    pieces at points that split no secret (so each piece can be masked on its own)."""

    def __init__(self, masker: SecretMasker) -> None:
        self._masker = masker
        self._pending = ""

    def feed(self, text: str, *, final: bool) -> list[tuple[str, bool]]:
        """Complete lines and pieces as ``(text with its line break, continues)`` pairs."""
        pending = self._pending + text
        found: list[tuple[str, bool]] = []
        at = 0
        while at < len(pending):
            newline = pending.find("\n", at, at + MAX_LINE_CHARS + 1)
            if newline != -1:
                found.append((pending[at : newline + 1], False))
                at = newline + 1
                continue
            if len(pending) - at <= MAX_LINE_CHARS:
                if final:
                    found.append((pending[at:], False))
                    at = len(pending)
                break
            rest = pending[at:]
            cut = self._masker.safe_cut(rest, MAX_LINE_CHARS)
            if cut is None and not final:
                break  # a secret may run past what has been read: wait for more output
            cut = len(rest) if cut is None else cut
            newline = rest.find("\n", MAX_LINE_CHARS)
            if newline != -1 and newline <= cut + 1:  # the line ends at the cut: no split
                found.append((rest[: newline + 1], False))
                at += newline + 1
            else:
                found.append((rest[:cut], cut < len(rest)))
                at += cut
        self._pending = pending[at:]
        return found


async def _pump(
    stream: asyncio.StreamReader,
    name: Stream,
    keep: _Tail,
    masker: SecretMasker,
    on_line: LineSink | None,
) -> None:
    """Read ``stream`` to its end in chunks (no line is too long), masking what ``on_line`` sees."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    splitter = _LineSplitter(masker)
    while True:
        raw = await stream.read(_READ_BYTES)
        for piece, continues in splitter.feed(decoder.decode(raw, final=not raw), final=not raw):
            keep.append(piece)
            if on_line is not None:
                shown = masker.mask(piece.rstrip("\r\n") if not continues else piece)
                on_line(name, shown + LINE_SPLIT_MARKER if continues else shown)
        if not raw:
            return


def _in_user_paths(
    on_line: LineSink | None, spec: StepSpec, staged: dict[str, Path]
) -> LineSink | None:
    """``on_line`` with the step's scratch output folders named by where they end up.

    A step sees its outputs in a scratch folder (``/tmp/aiop-<step>-.../out0/out``) that is moved
    to the spec's host path after exit 0; log lines name that host path instead. Mount sources
    already are the user's own paths. The first line says which host path each container path of
    the spec's command stands for.
    """
    if on_line is None:
        return None
    sink = on_line
    back = PathMap({str(stage): spec.outputs[source] for source, stage in staged.items()})
    pairs = [(m.target, host) for host, m in spec.mounts.items()]
    pairs += list(spec.outputs.items())
    if pairs:
        sink("engine", "local paths: " + ", ".join(f"{c} = {h}" for c, h in sorted(pairs)))

    def forward(stream: Stream, line: str) -> None:
        sink(stream, back.rewrite(line))

    return forward


def _prepare(spec: StepSpec, scratch: Path, caches: Path) -> tuple[dict[str, Path], PathMap, Path]:
    prefixes: dict[str, str] = {}
    for host, mount in spec.mounts.items():
        prefixes[mount.target] = str(Path(host).resolve())
    staged: dict[str, Path] = {}
    for i, source in enumerate(spec.outputs):
        stage = scratch / f"out{i}" / (Path(source).name or "root")
        stage.parent.mkdir(parents=True)
        staged[source] = stage
        prefixes[source] = str(stage)
    for name, target in spec.caches.items():
        volume = caches / name
        volume.mkdir(parents=True, exist_ok=True)
        prefixes[target] = str(volume)
    prefixes.update(_virtual_parents(prefixes, scratch / "root"))
    path_map = PathMap(prefixes)
    cwd = scratch / "work"
    if spec.workdir is not None:
        mapped = path_map.host_path(spec.workdir)
        cwd = Path(mapped) if mapped else scratch / "work" / spec.workdir.lstrip("/")
    cwd.mkdir(parents=True, exist_ok=True)
    return staged, path_map, cwd


def _virtual_parents(prefixes: dict[str, str], root: Path) -> dict[str, str]:
    """Folders that stand for the container folders above mapped paths.

    In a container, ``/aiop/in/parts`` is a folder holding the mounts ``p0`` and ``p1``; on the host
    no such folder exists. For every ancestor of a mapped path that neither is mapped itself nor
    exists on the host, a folder under ``root`` holds symbolic links to its mapped children (and
    its virtual sub-folders), so listing or globbing the parent works as in a container.
    """
    virtual: dict[str, str] = {}
    for target in sorted(prefixes, key=len, reverse=True):
        child = PurePosixPath(target)
        for parent in child.parents:
            key = str(parent)
            if key == "/" or key in prefixes or Path(key).exists():
                break
            folder = root / key.lstrip("/")
            folder.mkdir(parents=True, exist_ok=True)
            virtual[key] = str(folder)
            link = folder / child.name
            if str(child) in prefixes and not link.exists():
                link.symlink_to(prefixes[str(child)])
            child = parent
    return virtual


def _export(spec: StepSpec, staged: dict[str, Path]) -> dict[str, str]:
    """Put each staged output in place through the one export path (ADR 0013)."""
    exported: dict[str, str] = {}
    for source, stage in staged.items():
        dest = Path(spec.outputs[source])
        if not (stage.exists() or stage.is_symlink()):
            raise InvalidSpecError(
                f"exited 0 but wrote nothing at output path {source!r}; make the step write there or"
                " remove the output from the spec",
                step=spec.name,
            )
        kind: Kind = "directory" if stage.is_dir() and not stage.is_symlink() else "file"
        with receive(
            dest,
            kind,
            what=f"output {source!r}",
            origin=origin_of(spec),
            step=spec.name,
            needed=functools.partial(tree_size, stage),
        ) as landing:
            move_into(stage, landing)
        exported[source] = str(dest)
    return exported
