"""The stand-in engine's opt-in ``exec`` behaviour: each ``withExec`` really runs, on the host.

With ``FakeDaggerEngine(EXEC)`` (or :func:`exec_standin_engine`) the stand-in behaves like a tiny
engine, enough to run a whole pipeline through :class:`~adapters.dagger.runner.DaggerRunner`. It is
still a loopback stand-in at the network boundary, not an engine: there is **no isolation and there
are no images**. For each evaluated container (one ``withExec`` per chain: the last one runs):

* ``args`` run as a host subprocess; a first argument ``python``/``python3`` is this interpreter
  (``sys.executable``); any other command is the host's own, whatever the image says;
* a container path is seen on the host as (see :meth:`HostExec.run`):

  1. a mount target -> the mounted host path itself (``host.directory``/``host.file``): writes
     reach the host and read-only is not enforced (the real engine mounts copy-on-write snapshots);
  2. a cache target -> a temporary folder per cache volume key, kept for the engine's life;
  3. a path under one of the host's system folders (:data:`HOST_FOLDERS`: ``/usr``, ``/tmp``,
     ``/dev`` ...) -> the host's own path (the host stands in for the image);
  4. any other path (``/aiop/out``, ``/work``) -> the container's private scratch folder, standing
     in for its root file system (even if the host has such a folder: it is never touched);

  arguments and environment values are rewritten with :class:`adapters.paths.PathMap` (at path
  boundaries, also inside a ``python -c`` text) for the paths of cases 1 and 2 and for the
  top-level folders of case 4 that the request names: the folder of a mount or cache target, of
  the workdir, of an argument or environment value that *is* a path (``/aiop/out``,
  ``--output=/aiop/out``, ``A:B`` lists), or of a path of two or more parts inside a text
  (``open('/aiop/out/x')`` in a ``python -c`` script). A one-part path inside a text (``'/x.csv'``,
  often a suffix) names no folder, and a path a program builds itself is not seen: if such a
  path's folder was not named otherwise, the program reaches the host's.
* the environment is ``withEnvVariable`` (values rewritten) and ``withSecretVariable`` (the
  ``setSecret`` plaintext) over the host's ``PATH``, ``HOME``, ``LANG``, ``LC_ALL``, ``TZ`` and
  ``TMPDIR``; the working directory is ``withWorkdir`` seen as above, else the scratch folder;
* the real exit code, stdout and stderr are returned (secrets are not scrubbed: the adapter masks);
  a command that cannot be started exits 1 with the engine init's
  ``exec: "x": executable file not found in $PATH`` on stderr (cmd/init/main.go);
* ``directory(path)``/``file(path)`` and ``exists`` look at the host path of ``path``, and
  ``export`` copies from there.

Processes still running when the engine stops are killed; scratch and cache folders are removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from adapters.paths import PathMap
from tests.fakes.dagger_engine import (
    EXEC,
    ExecOutcome,
    ExecRequest,
    FakeDaggerEngine,
    MountedPath,
    _excluded,
)

__all__ = ["HOST_FOLDERS", "HostExec", "exec_standin_engine"]

_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
_PYTHONS = {"python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}"}
#: Top-level folders that are the host's own in a container too (no image: the host stands in).
HOST_FOLDERS = frozenset(
    {"/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media", "/mnt", "/nix",
     "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp", "/usr", "/var"}
)  # fmt: skip
#: An argument (or list item) that is a path: ``/aiop/out`` or ``--output=/aiop/out``.
_PATH_ARG = re.compile(r"^(?:-[\w-]*=)?(/[^\s=]+)$")
#: A path of two or more parts inside a text, at a path boundary (as PathMap matches them).
_NESTED = re.compile(r"""(?:^|(?<=[=:,;\s"'(\[]))(/[^/\s=:,;"'()\[\]]+/[^/\s"')\]])""")
_SESSION_ENV = ("DAGGER_SESSION_PORT", "DAGGER_SESSION_TOKEN")


class HostExec:
    """Runs exec requests as host subprocesses under ``root`` (scratch and cache folders).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     request = ExecRequest(image="x", args=["python", "-c", "print(1)"], env={},
        ...                           secret_env={}, workdir=None, mounts={}, caches={},
        ...                           expect="ANY")
        ...     HostExec(Path(tmp)).run(request).stdout
        '1\\n'
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()

    def run(self, request: ExecRequest, *, layer: bool = False) -> ExecOutcome:
        """Run ``request`` in a fresh scratch root; its paths seen from the host as documented.

        A ``layer`` (the install of a step's requirements under its command) runs too, but a
        ``pip install`` with ``--dry-run``: the host stands in for the image and must not change.
        """
        if layer and request.args[1:4] == ["-m", "pip", "install"]:
            request = replace(request, args=[*request.args, "--dry-run"])
        (self.root / "containers").mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="rootfs-", dir=self.root / "containers"))
        prefixes = {
            target: _uploaded(mounted, scratch / "mounts" / target.lstrip("/"))
            for target, mounted in request.mounts.items()
        }
        for target, key in request.caches.items():
            volume = self.root / "caches" / key.replace("/", "_")
            volume.mkdir(parents=True, exist_ok=True)
            prefixes[target] = str(volume)
        tops = _private_tops(request)
        for top in tops:
            prefixes.setdefault(top, str(scratch / top.lstrip("/")))
        for target, host in list(prefixes.items()):
            # A mount inside a private folder shows in its parent, as in a container's filesystem
            # (/aiop/in/parts lists p0 and p1).
            if target not in tops and _top(target) in tops:
                link = scratch / target.lstrip("/")
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to(host)
        path_map = PathMap(prefixes)

        def host_path(container_path: str) -> Path:
            mapped = path_map.host_path(container_path)
            if mapped is not None:
                return Path(mapped)
            if _top(container_path) in HOST_FOLDERS:
                return Path(container_path)
            return scratch / container_path.lstrip("/")

        cwd = host_path(request.workdir) if request.workdir else scratch
        cwd.mkdir(parents=True, exist_ok=True)
        args = [path_map.rewrite(a) for a in request.args]
        if args and args[0] in _PYTHONS:
            args[0] = sys.executable
        env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
        env.update({k: path_map.rewrite(v) for k, v in request.env.items()})
        env.update(request.secret_env)
        exit_code, out, err = self._spawn(args, env, cwd, request)
        return ExecOutcome(exit_code=exit_code, stdout=out, stderr=err, host_path=host_path)

    def _spawn(
        self, args: list[str], env: dict[str, str], cwd: Path, request: ExecRequest
    ) -> tuple[int, str, str]:
        try:
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError) as exc:
            # The engine's init (cmd/init/main.go) looks a bare name up in $PATH and execs a path;
            # either failure is printed on stderr and init exits 1: an exec result, not a query
            # error.
            command = request.args[0]
            if "/" not in command:
                return 1, "", f'exec: "{command}": executable file not found in $PATH\n'
            return 1, "", f"fork/exec {command}: {(exc.strerror or str(exc)).lower()}\n"
        with self._lock:
            self._running.add(proc)
        try:
            out, err = proc.communicate()
        finally:
            with self._lock:
                self._running.discard(proc)
        # The engine's init exits 128 + the signal when the command was killed by one
        # (cmd/init/main.go); Python reports that as a negative return code.
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def close(self) -> None:
        """Kill what still runs and remove the scratch and cache folders."""
        with self._lock:
            running = list(self._running)
        for proc in running:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def _top(path: str) -> str:
    """``/aiop`` for ``/aiop/out/x.csv``."""
    return "/" + path.lstrip("/").split("/", 1)[0]


def _private_tops(request: ExecRequest) -> list[str]:
    """The top-level folders outside :data:`HOST_FOLDERS` that the request names (case 4)."""
    paths = [*request.mounts, *request.caches, request.workdir or ""]
    for value in [*request.args, *request.env.values()]:
        matches = (_PATH_ARG.match(item) for item in value.split(":"))
        paths.extend(m.group(1) for m in matches if m)
        paths.extend(m.group(1) for m in _NESTED.finditer(value))
    return sorted({_top(p) for p in paths if p.startswith("/") and p != "/"} - HOST_FOLDERS)


@contextlib.contextmanager
def exec_standin_engine(*, check_queries: bool = True) -> Iterator[FakeDaggerEngine]:
    """A stand-in engine in exec mode that the Dagger SDK finds as the current session.

    Sets ``DAGGER_SESSION_PORT`` and ``DAGGER_SESSION_TOKEN`` in ``os.environ`` for the block
    (so every :class:`~adapters.dagger.runner.DaggerRunner`, in this process or its threads, uses
    it) and restores them after. With ``check_queries``, a block that ends without an error fails
    if the official schema rejected any query the engine received.

    Example:
        >>> import asyncio
        >>> from adapters import StepSpec
        >>> from adapters.dagger.runner import DaggerRunner
        >>> spec = StepSpec(name="hi", image="python:3.12-slim", args=["python", "-c", "print(7)"])
        >>> with exec_standin_engine():
        ...     asyncio.run(DaggerRunner(provision_timeout_s=10).run(spec)).stdout
        '7\\n'
    """
    saved = {name: os.environ.get(name) for name in _SESSION_ENV}
    with FakeDaggerEngine(EXEC) as engine:
        os.environ.update(engine.session_env())
        try:
            yield engine
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    if check_queries and engine.rejected:
        raise AssertionError(f"the real engine would reject these queries: {engine.rejected}")


def _uploaded(mounted: MountedPath, copy: Path) -> str:
    """Where the command finds a mounted directory: a copy, as the engine uploads a snapshot of
    it (``host.directory`` through the session's file sync, engine/filesync), with symbolic links
    kept as links and ``exclude`` left out. A link out of the folder therefore dangles, as in a
    container. Mounted files are used in place (reading them is all a step does)."""
    if mounted.kind != "directory":
        return mounted.snapshot or mounted.host_path
    root = Path(mounted.snapshot or mounted.host_path)

    def ignore(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).relative_to(root)
        return {n for n in names if _excluded((relative / n).as_posix(), mounted.exclude)}

    shutil.copytree(root, copy, symlinks=True, ignore=ignore)
    return str(copy)
