"""The local runner: a spec's command as a host subprocess, same contract, no isolation.

How container paths map to host paths (the same spec gives the same outputs on both runners):

| spec field | container path | host path used by the local runner |
| --- | --- | --- |
| ``mounts`` | the mount target | the host path itself (read-only is *not* enforced) |
| ``outputs`` | the output source | a private staging folder, moved to the host path atomically after exit 0 |
| ``caches`` | the cache target | ``$AIOP_CACHE_DIR/<name>`` (default ``~/.cache/aiop/caches/<name>``) |
| ``workdir`` | the working directory | its mapped host path, else a private scratch folder |

Every argument and environment value that names one of those container paths is rewritten
(:class:`adapters.paths.PathMap`). A first argument of ``python`` or ``python3`` runs the interpreter
that runs the flow, which has the step dependencies installed. The environment is the spec's ``env`` and
``secrets`` over a minimal base (``PATH``, ``HOME``, ``LANG``, ``TZ``, ``TMPDIR``), as in a container;
the image is ignored. The timeout kills the whole process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections import deque
from pathlib import Path, PurePosixPath

from adapters._fs import replace_atomically
from adapters.contract import Backend, StepResult, StepSpec, mask_secrets, tail
from adapters.errors import InfrastructureError, InvalidSpecError, StepTimeoutError
from adapters.paths import PathMap
from adapters.runner import LineSink, Stream

__all__ = ["LocalRunner", "cache_root"]

_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
_PYTHONS = {"python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}"}
_KILL_GRACE_S = 2.0
_MAX_TAIL_LINES = 2_000


def cache_root() -> Path:
    """Where the local runner keeps cache volumes (``AIOP_CACHE_DIR`` or ``~/.cache/aiop/caches``)."""
    configured = os.environ.get("AIOP_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "aiop" / "caches"


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

    def __init__(self, *, kill_grace_s: float = _KILL_GRACE_S) -> None:
        self._kill_grace_s = kill_grace_s

    async def run(
        self, spec: StepSpec, *, attempt: int = 1, on_line: LineSink | None = None
    ) -> StepResult:
        """Run ``spec`` once; a non-zero exit is returned, not raised."""
        for host in spec.mounts:
            if not Path(host).exists():
                raise InvalidSpecError(
                    f"mount source {host!r} does not exist on this host; create it or fix the path",
                    step=spec.name,
                )
        with tempfile.TemporaryDirectory(prefix=f"aiop-{spec.name}-") as scratch:
            staged, path_map, cwd = _prepare(spec, Path(scratch))
            on_line = _in_user_paths(on_line, spec, staged)
            args = [path_map.rewrite(a) for a in spec.args]
            if args[0] in _PYTHONS:
                args[0] = sys.executable
            env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
            env.update({k: path_map.rewrite(v) for k, v in spec.env.items()})
            env.update({k: v.get_secret_value() for k, v in spec.secrets.items()})
            started = time.monotonic()
            exit_code, out, err = await self._execute(spec, args, env, cwd, on_line)
            duration = time.monotonic() - started
            outputs = _export(spec, staged) if exit_code == 0 else {}
        secrets = spec.secret_values()
        return StepResult(
            step=spec.name,
            exit_code=exit_code,
            stdout=tail(mask_secrets("".join(out), secrets)),
            stderr=tail(mask_secrets("".join(err), secrets)),
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
        on_line: LineSink | None,
    ) -> tuple[int, deque[str], deque[str]]:
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
                f"cannot start {spec.args[0]!r} on this host ({exc.strerror}); install it, fix the"
                " command, or run the step with the Dagger runner",
                step=spec.name,
            ) from exc
        except OSError as exc:
            raise InfrastructureError(
                f"the host could not start the step's process: {exc.strerror or exc}",
                step=spec.name,
            ) from exc
        secrets = spec.secret_values()
        out: deque[str] = deque(maxlen=_MAX_TAIL_LINES)
        err: deque[str] = deque(maxlen=_MAX_TAIL_LINES)
        stdout, stderr = proc.stdout, proc.stderr
        assert stdout is not None and stderr is not None

        async def finish() -> int:
            await asyncio.gather(
                _pump(stdout, "stdout", out, secrets, on_line),
                _pump(stderr, "stderr", err, secrets, on_line),
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
        return exit_code, out, err

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
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


async def _pump(
    stream: asyncio.StreamReader,
    name: Stream,
    keep: deque[str],
    secrets: list[str],
    on_line: LineSink | None,
) -> None:
    while True:
        raw = await stream.readline()
        if not raw:
            return
        line = raw.decode("utf-8", errors="replace")
        keep.append(line)
        if on_line is not None:
            on_line(name, mask_secrets(line.rstrip("\r\n"), secrets))


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


def _prepare(spec: StepSpec, scratch: Path) -> tuple[dict[str, Path], PathMap, Path]:
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
        volume = cache_root() / name
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
    exported: dict[str, str] = {}
    for source, stage in staged.items():
        dest = Path(spec.outputs[source])
        if not stage.exists():
            raise InvalidSpecError(
                f"exited 0 but wrote nothing at output path {source!r}; make the step write there or"
                " remove the output from the spec",
                step=spec.name,
            )
        replace_atomically(stage, dest)
        exported[source] = str(dest)
    return exported
