"""A loopback stand-in for the Dagger engine: the real SDK talks to it over real HTTP.

It fakes the engine at its network boundary, so everything between the adapter and the socket (the
Dagger SDK, gql, httpx, retries, error translation) runs for real. What it does:

* listens on ``127.0.0.1`` on a free port, in a thread, and checks HTTP basic auth (session token
  as the user), like ``dagger session``; point the SDK at it with ``DAGGER_SESSION_PORT`` and
  ``DAGGER_SESSION_TOKEN`` (see :meth:`FakeDaggerEngine.session_env`);
* answers GraphQL, introspection included, with ``graphql-core`` from the hand-written
  ``dagger_min.graphqls`` (only what the adapter uses);
* validates every query against the official schema too, when ``schema-v0.21.8.graphqls`` is
  present beside the repository (``../shared/dagger``): a query the real engine would reject is
  answered with the validation errors, as the engine would, and recorded in
  :attr:`FakeDaggerEngine.rejected` so a test can fail on it;
* returns IDs for objects and loads them back through ``node(id:)``;
* runs ``withExec`` through a scripted behaviour (:attr:`FakeDaggerEngine.behaviour`): a function
  ``ExecRequest -> ExecOutcome``, or :data:`DIE` (the engine dies during the query: the socket is
  closed without an answer and the port stops listening), or :data:`DROP` (this query's connection
  is reset, the engine goes on serving), or :data:`HANG` (no answer until the engine stops or the
  query is cancelled), or :data:`EXEC` (the command really runs on the host, see
  :mod:`tests.fakes.host_exec`); a function may also return one of those; a failing command
  raises the engine's ``EXEC_ERROR`` unless ``expect`` allows it;
* exports files the behaviour produced (:attr:`ExecOutcome.files`, or on the host:
  :attr:`ExecOutcome.host_path`) to host paths, since it shares the host's filesystem;
* records every query (:attr:`FakeDaggerEngine.queries`) and every resolved field with its
  arguments (:meth:`FakeDaggerEngine.calls`), and each query's ``traceparent``, ``tracestate``
  and ``baggage`` headers (:class:`ReceivedQuery`: trace id, parent span id, sampled);
* emits the engine's own spans, one per resolved call under the request's ``traceparent``, when
  given an exporter (:attr:`FakeDaggerEngine.span_exporter`; see :meth:`FakeDaggerEngine.
  _emit_spans`);
* answers the LLM API (``llm``, ``env``, ``LLM.step``, ``tokenUsage``, ``Env`` bindings) with a
  scripted model (:attr:`FakeDaggerEngine.model`, :mod:`tests.fakes.dagger_llm`, which names the
  engine sources it follows).

It does not scrub secret values from output (the real engine does) so that the adapter's own masking
is what the tests see.

Where the adapter depends on how the real engine (github.com/dagger/dagger, v0.21.8) behaves, the
stand-in does the same; each such behaviour names the engine source it follows:

* **exit codes and expect** (``core/container.go``, ``ReturnTypes.ReturnCodes``): ``SUCCESS``
  allows exit 0, ``FAILURE`` 1-127 and 192-255, ``ANY`` 0-127 and 192-255; 128-191 (signal deaths,
  137 for an OOM kill) are never allowed. A disallowed exit is the ``EXEC_ERROR`` of
  ``core/exec_error.go``, whose stdout and stderr are the last 100 KiB (``[omitting N bytes]...``
  in front, ``engine/engineutil/ref.go``) with surrounding whitespace trimmed;
* **results kept across sessions** (``dagql/cache.go``: ``Cache.wait`` stores a completed call's
  result and drops a call that ended in an error): an exec whose exit is allowed is kept per
  container definition for the engine's life, across sessions, and a later identical definition
  gets it back without running (:attr:`FakeDaggerEngine.keep_results`, on by default); an exec
  error is not kept, so the same definition runs again. The definition is what the engine's cache
  key covers: image, environment, secrets by name (``core/schema/secret.go``: ``setSecret``'s
  digest is its name handle, not its value), mounts by content (name, size and modification time
  here), cache volume keys, workdir, arguments, ``expect``, the image by digest and the layers
  under the exec. :attr:`FakeDaggerEngine.executions` counts the commands really run;
* **one call in flight per definition** (``dagql/cache.go``: ``ongoingCalls``, ``wait``):
  identical execs in flight run once and every caller gets the same outcome or error; a call
  whose last caller's request is gone (the client closed the connection: a step's timeout) is
  cancelled and nothing of it is kept;
* **layers run** (``core/container_exec.go``: an exec evaluates the container it builds on): an
  earlier ``withExec`` under the command (the step's ``requirements`` install) runs first, through
  :attr:`FakeDaggerEngine.layer_behaviour`, is kept like any exec, and when it fails the
  ``EXEC_ERROR`` names *its* command (``cmd``) and the command never runs;
* **the exec error's message** (``core/exec_error.go``; the SDK's golden output in
  ``dagql/idtui/testdata``): ``exit code: N [traceparent:<trace>-<span>]``;
* **image references** (``core/schema/container.go``, ``from``): the address is normalised like
  ``reference.ParseNormalizedNamed`` + ``TagNameOnly`` (``alpine`` ->
  ``docker.io/library/alpine:latest``); a bad one is ``failed to parse image address ...``, a
  resolution failure is ``failed to resolve image "<normalised>" (platform: "linux/amd64"):
  <cause>``. A tag is resolved against the registry (:attr:`FakeDaggerEngine.registry`) once per
  session (``fromSessionScopeInput``), even when the engine holds the image; a digest reference
  is resolved locally when the engine holds it (engine/server/resolver/resolver.go
  ``tryLocalCanonicalConfig``), else by the registry. ``imageRef`` is the resolution
  (``name:tag@digest``);
* **the lazy pull** (``core/container_image.go``: ``ContainerFromImageRefLazy.Evaluate``): the
  layers are fetched when a container is first evaluated (after a kept result is looked for);
  failures read ``pull image "<ref@digest>": <cause>`` or ``import image "<ref@digest>": <cause>``;
  what was pulled stays for the engine's life (:attr:`FakeDaggerEngine.content_store`);
* **host reads** (``core/schema/host.go``; ``dagql/cache_inputs.go``): ``host.directory`` and
  ``host.file`` take a snapshot of the path when they are read, cached per client for the session
  unless ``noCache``;
* **a missing executable** (``cmd/init/main.go``): the engine's init cannot find ``args[0]``, prints
  ``exec: "x": executable file not found in $PATH`` on stderr and exits 1 (exec mode; a scripted
  behaviour returns what it likes);
* **sessions**: each new client connection introspects the schema once
  (:attr:`FakeDaggerEngine.sessions` counts them). Every connection joins the stand-in's one
  engine session, as every connection of a process under ``dagger run`` does: what the engine
  caches per session or per client (``llm``, ``env``, host reads, tag resolutions;
  ``dagql/cache_inputs.go``) lives until :meth:`FakeDaggerEngine.new_session`, which is what a
  new ``dagger session`` gives; exec results and pulled images are kept across sessions.

Example:
    >>> with FakeDaggerEngine() as engine:
    ...     engine.behaviour = lambda req: ExecOutcome(stdout="hi\\n")
    ...     sorted(engine.session_env())
    ['DAGGER_SESSION_PORT', 'DAGGER_SESSION_TOKEN']
"""

from __future__ import annotations

import base64
import contextlib
import enum
import fnmatch
import functools
import hashlib
import itertools
import json
import os
import re
import secrets
import select
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from graphql import (
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    build_schema,
    default_field_resolver,
    graphql_sync,
    parse,
    validate,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from tests.fakes.host_exec import HostExec

__all__ = [
    "DEFAULT_SCHEMA_PATH",
    "DIE",
    "DROP",
    "EXEC",
    "HANG",
    "MIN_SCHEMA_PATH",
    "OFFICIAL_SCHEMA_PATH",
    "SCHEMA_ENV",
    "Call",
    "ExecOutcome",
    "ExecRequest",
    "FakeDaggerEngine",
    "MountedPath",
    "ReceivedQuery",
    "normalized_image_ref",
    "official_schema",
]

_T = TypeVar("_T")

#: The hand-written schema the stand-in serves.
MIN_SCHEMA_PATH = Path(__file__).with_name("dagger_min.graphqls")
#: Where the official schema of Dagger v0.21.8 is read from: ``AIOP_DAGGER_SCHEMA`` when set, else
#: the shared data folder beside the checkout (``../shared/dagger``). Never copied into the project.
SCHEMA_ENV = "AIOP_DAGGER_SCHEMA"
DEFAULT_SCHEMA_PATH = Path(__file__).resolve().parents[3] / "shared/dagger/schema-v0.21.8.graphqls"
OFFICIAL_SCHEMA_PATH = Path(os.environ.get(SCHEMA_ENV) or DEFAULT_SCHEMA_PATH)

#: How long a :data:`HANG` waits at most before giving up (so a leaked thread cannot live forever).
_HANG_LIMIT_S = 30.0

#: Allowed exit codes per ``expect`` (core/container.go, ReturnTypes.ReturnCodes).
_FAILURE_CODES = frozenset(range(1, 128)) | frozenset(range(192, 256))
VALID_EXIT_CODES: dict[str, frozenset[int]] = {
    "SUCCESS": frozenset({0}),
    "FAILURE": _FAILURE_CODES,
    "ANY": _FAILURE_CODES | {0},
}
#: ExecError carries this much of the end of stdout and stderr (engine/engineutil/ref.go).
_EXEC_ERROR_OUTPUT_BYTES = 100 * 1024
#: The platform named in image resolution errors.
PLATFORM = "linux/amd64"
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


class _Scripted(enum.Enum):
    DIE = "die"
    DROP = "drop"
    HANG = "hang"
    EXEC = "exec"


#: Behaviour: the engine dies while the exec query is in flight.
DIE = _Scripted.DIE
#: Behaviour: the connection of the exec's query is reset without an answer (a network blip, a
#: proxy's reset); the engine itself keeps serving.
DROP = _Scripted.DROP
#: Behaviour: the exec never answers (until the engine is stopped).
HANG = _Scripted.HANG
#: Behaviour: the exec really runs as a host subprocess (no isolation, no images; see host_exec).
EXEC = _Scripted.EXEC


@dataclass(frozen=True)
class MountedPath:
    """A host path mounted into the container.

    Attributes:
        host_path: the host path the client named.
        snapshot: the engine's copy of it, taken when it was read (``host.directory``/``file``).
    """

    host_path: str
    kind: str  # "directory" or "file"
    read_only: bool = False
    exclude: tuple[str, ...] = ()
    snapshot: str | None = None


@dataclass(frozen=True)
class ExecRequest:
    """What the stand-in was asked to run (given to the behaviour)."""

    image: str
    args: list[str]
    env: dict[str, str]
    secret_env: dict[str, str]
    workdir: str | None
    mounts: dict[str, MountedPath]
    caches: dict[str, str]
    expect: str
    setup: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class ExecOutcome:
    """What a command did: exit code, output and the files it left.

    Attributes:
        files: files left, by container path (scripted behaviours).
        host_path: where a container path lies on the host after the command (exec mode);
            consulted for paths not in ``files``.
    """

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    host_path: Callable[[str], Path] | None = None


ExecBehaviour = Callable[[ExecRequest], "ExecOutcome | _Scripted"] | _Scripted


#: A W3C ``traceparent`` (version 00): trace id, parent span id, flags.
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class ReceivedQuery:
    """One GraphQL request as received, and what the official schema said about it.

    The trace headers are recorded as the engine reads them, per request
    (``engine/server/session.go`` ``serveHTTPToClient``: ``Propagator.Extract`` from the request's
    headers; the CLI's proxy does the same, ``engine/client/client.go`` ``ServeHTTP``).
    """

    text: str
    variables: Mapping[str, Any] | None
    official_errors: list[str]
    traceparent: str | None = None
    tracestate: str | None = None
    baggage: str | None = None

    def _parsed(self) -> tuple[str, str, int] | None:
        # The Go propagator ignores a malformed header (and the all-zero ids): no parent.
        found = _TRACEPARENT.match(self.traceparent or "")
        if found is None or set(found.group(1)) == {"0"} or set(found.group(2)) == {"0"}:
            return None
        return found.group(1), found.group(2), int(found.group(3), 16)

    @property
    def trace_id(self) -> str | None:
        """The trace the request belongs to (32 hex digits), None without a valid header."""
        parsed = self._parsed()
        return parsed[0] if parsed else None

    @property
    def parent_span_id(self) -> str | None:
        """The span the engine's spans of this request are children of (16 hex digits)."""
        parsed = self._parsed()
        return parsed[1] if parsed else None

    @property
    def sampled(self) -> bool | None:
        """The sampled flag: the engine records spans under this parent only when it is set."""
        parsed = self._parsed()
        return bool(parsed[2] & 1) if parsed else None


@dataclass(frozen=True)
class Call:
    """One resolved field: ``Container.withEnvVariable(name=..., value=...)``."""

    type_name: str
    field_name: str
    args: dict[str, Any]


def normalized_image_ref(address: str) -> str:
    """``address`` as the engine names it (core/schema/container.go ``from``: docker's
    ``reference.ParseNormalizedNamed`` then ``TagNameOnly``).

    Raises:
        ValueError: not a valid reference ("invalid reference format").

    Example:
        >>> normalized_image_ref("alpine:3.20"), normalized_image_ref("ghcr.io/o/r")
        ('docker.io/library/alpine:3.20', 'ghcr.io/o/r:latest')
    """
    name, _, digest = address.partition("@")
    tag = ""
    if name.rfind(":") > name.rfind("/"):
        name, _, tag = name.rpartition(":")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    if not all(_PATH_COMPONENT.match(part) for part in path.split("/")) or (
        tag and not re.fullmatch(r"[\w][\w.-]{0,127}", tag)
    ):
        raise ValueError("invalid reference format")
    if not tag and not digest:
        tag = "latest"
    return f"{domain}/{path}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _exec_error_output(text: str) -> str:
    """What an ExecError carries of an output: its last 100 KiB, trimmed (core/exec_error.go)."""
    data = text.encode()
    if len(data) >= _EXEC_ERROR_OUTPUT_BYTES:
        omitted = len(data) - _EXEC_ERROR_OUTPUT_BYTES
        data = data[-_EXEC_ERROR_OUTPUT_BYTES:]
        note = f"[omitting {omitted} bytes]...".encode()
        data = note + data[len(note) :]
    return data.decode(errors="replace").strip()


def _excluded(relative: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``host.directory(exclude=...)`` leaves ``relative`` out (``**/name`` patterns)."""
    parts = relative.split("/")
    for pattern in patterns:
        name = pattern.removeprefix("**/")
        if any(fnmatch.fnmatchcase(part, name) for part in parts):
            return True
    return False


def _content(host_path: str, exclude: tuple[str, ...] = ()) -> tuple[tuple[str, int, int], ...]:
    """A mounted host path's content identity: names, sizes and modification times.

    What ``exclude`` leaves out is not part of it: the engine uploads and digests only what the
    directory includes (core/schema/host.go ``directory``).
    """
    root = Path(host_path)
    if root.is_file():
        st = root.stat()
        return (("", st.st_size, st.st_mtime_ns),)
    entries = []
    for path in sorted(root.rglob("*")):
        if _excluded(path.relative_to(root).as_posix(), exclude):
            continue
        with contextlib.suppress(OSError):
            st = path.lstat()
            entries.append((path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(entries)


def echo(request: ExecRequest) -> ExecOutcome:
    """Default behaviour: print the arguments and exit 0."""
    return ExecOutcome(stdout=" ".join(request.args) + "\n")


@functools.cache
def official_schema() -> GraphQLSchema | None:
    """The official schema, built once, or None when the shared file is absent."""
    if not OFFICIAL_SCHEMA_PATH.is_file():
        return None
    return build_schema(OFFICIAL_SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.cache
def _min_schema() -> GraphQLSchema:
    return build_schema(MIN_SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=256)
def _official_errors(text: str) -> list[str]:
    """Why the official schema rejects ``text`` (empty: accepted, or no official schema)."""
    official = official_schema()
    if official is None:
        return []
    try:
        document = parse(text)
    except GraphQLError as exc:
        return [exc.message]
    return [e.message for e in validate(official, document)]


@functools.lru_cache(maxsize=8)
def _introspection(text: str) -> dict[str, Any]:
    result = graphql_sync(_min_schema(), text)
    answer: dict[str, Any] = {"data": result.data}
    if result.errors:
        answer["errors"] = [e.formatted for e in result.errors]
    return answer


@dataclass
class _Flight:
    """An exec in flight: who waits for it, and its outcome or error once it ended."""

    callers: list[threading.Event] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    outcome: ExecOutcome | None = None
    error: GraphQLError | None = None


def _layer_done(request: ExecRequest) -> ExecOutcome:
    """Default for a layer under the command (the step's requirements): it succeeds."""
    return ExecOutcome(stdout="Successfully installed " + " ".join(request.args[7:]) + "\n")


class _Die(Exception):
    """Raised inside a resolver to make the handler drop the connection and stop the engine."""


# ---------------------------------------------------------------------------------------------
# GraphQL objects. Each has an ID and methods named after its fields (graphql-core's default
# resolver calls them with ``info`` and the field arguments, defaults filled in).
# ---------------------------------------------------------------------------------------------


class _Object:
    typename: ClassVar[str]

    def __init__(self, engine: FakeDaggerEngine) -> None:
        self.engine = engine
        self.id = engine._register(self)


class _Secret(_Object):
    typename = "Secret"

    def __init__(self, engine: FakeDaggerEngine, name: str, plaintext: str) -> None:
        super().__init__(engine)
        self.name = name
        self.plaintext = plaintext


class _CacheVolume(_Object):
    typename = "CacheVolume"

    def __init__(self, engine: FakeDaggerEngine, key: str) -> None:
        super().__init__(engine)
        self.key = key


class _Directory(_Object):
    typename = "Directory"

    def __init__(
        self,
        engine: FakeDaggerEngine,
        *,
        host_path: str | None = None,
        files: Mapping[str, str | bytes] | None = None,
        exclude: tuple[str, ...] = (),
        source: str | None = None,
    ) -> None:
        super().__init__(engine)
        self.host_path = host_path  # where its content lies (a snapshot, for a host read)
        self.files = dict(files or {})
        self.exclude = exclude
        self.source = source  # the host path read, for a host read

    def export(self, info: GraphQLResolveInfo[Any], path: str, wipe: bool, **_: Any) -> str:
        self.engine._maybe_hang_export()
        if self.host_path is not None and not self.files:
            shutil.copytree(self.host_path, path, symlinks=True, dirs_exist_ok=not wipe)
            return path
        self.engine._export(info, {Path(path) / rel: data for rel, data in self.files.items()})
        return path


class _File(_Object):
    typename = "File"

    def __init__(
        self,
        engine: FakeDaggerEngine,
        *,
        host_path: str | None = None,
        data: str | bytes = b"",
        source: str | None = None,
    ) -> None:
        super().__init__(engine)
        self.host_path = host_path  # where its content lies (a snapshot, for a host read)
        self.data = data
        self.source = source  # the host path read, for a host read

    def export(self, info: GraphQLResolveInfo[Any], path: str, **_: Any) -> str:
        self.engine._maybe_hang_export()
        if self.host_path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.host_path, path)
            return path
        self.engine._export(info, {Path(path): self.data})
        return path


class _Host(_Object):
    """``Host``: a read takes a snapshot of the path (the session's file sync uploads it), cached
    per client unless ``noCache`` (core/schema/host.go: ``RequestedCacheInput("noCache")``;
    dagql/cache_inputs.go: per client, or a new random input per call), so the same read again
    in the session returns the first snapshot even after the path changed on the host."""

    typename = "Host"

    def directory(
        self,
        info: GraphQLResolveInfo[Any],
        path: str,
        exclude: list[str],
        noCache: bool = False,
        **args: Any,
    ) -> _Directory:
        def read() -> _Directory:
            if not Path(path).is_dir():
                raise GraphQLError(
                    f"failed to stat {path}: lstat {path}: no such file or directory"
                )
            snapshot = self.engine._upload(path, tuple(exclude))
            return _Directory(self.engine, host_path=snapshot, exclude=tuple(exclude), source=path)

        if noCache:
            return read()
        key = ("host.directory", self.engine.session_scope, path, tuple(exclude),
               tuple(sorted((k, repr(v)) for k, v in args.items())))  # fmt: skip
        return self.engine.memo(key, read)

    def file(
        self, info: GraphQLResolveInfo[Any], path: str, noCache: bool = False, **_: Any
    ) -> _File:
        def read() -> _File:
            if not Path(path).is_file():
                raise GraphQLError(
                    f"failed to stat {path}: lstat {path}: no such file or directory"
                )
            return _File(self.engine, host_path=self.engine._upload(path, ()), source=path)

        if noCache:
            return read()
        return self.engine.memo(("host.file", self.engine.session_scope, path), read)


@dataclass(frozen=True)
class _ContainerState:
    image: str | None = None
    canonical: str | None = None  # the image as the engine resolved it: name[:tag]@digest
    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[tuple[str, _Secret], ...] = ()
    mounts: tuple[tuple[str, MountedPath], ...] = ()
    caches: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    exec_args: tuple[str, ...] | None = None
    expect: str = "SUCCESS"
    #: The container as each earlier ``withExec`` left it: layers evaluated before this exec.
    layers: tuple[_ContainerState, ...] = ()
    #: The container as the last ``withExec`` made it (the layer it is for a later exec).
    last_exec: _ContainerState | None = None

    def definition(self) -> tuple[Any, ...]:
        """What the engine's cache key covers (see the module docstring)."""
        return (
            self.canonical,
            self.env,
            tuple((name, secret.name) for name, secret in self.secrets),
            tuple(
                (t, m.host_path, m.read_only, _content(m.snapshot or m.host_path, m.exclude))
                for t, m in self.mounts
            ),
            self.caches,
            self.workdir,
            self.exec_args,
            self.expect,
            tuple(layer.definition() for layer in self.layers),
        )


class _Container(_Object):
    typename = "Container"

    def __init__(self, engine: FakeDaggerEngine, state: _ContainerState) -> None:
        super().__init__(engine)
        self.state = state
        self._outcome: ExecOutcome | None = None
        self._lock = threading.Lock()

    def _with(self, **changes: Any) -> _Container:
        return _Container(self.engine, replace(self.state, **changes))

    # --- pipeline building (lazy) ---

    def from_(self, info: GraphQLResolveInfo[Any], address: str, **_: Any) -> _Container:
        return self._with(image=address, canonical=self.engine._resolve_image(address))

    def imageRef(self, info: GraphQLResolveInfo[Any]) -> str:
        if self.state.canonical is None:
            raise GraphQLError("Image reference can only be retrieved immediately after the"
                               " 'Container.From' call")  # fmt: skip
        return self.state.canonical

    def withEnvVariable(
        self, info: GraphQLResolveInfo[Any], name: str, value: str, **_: Any
    ) -> Any:
        return self._with(env=(*self.state.env, (name, value)))

    def withSecretVariable(self, info: GraphQLResolveInfo[Any], name: str, secret: str) -> Any:
        loaded = self.engine._load(secret, _Secret)
        return self._with(secrets=(*self.state.secrets, (name, loaded)))

    def withMountedDirectory(
        self, info: GraphQLResolveInfo[Any], path: str, source: str, readOnly: bool, **_: Any
    ) -> Any:
        directory = self.engine._load(source, _Directory)
        mounted = MountedPath(
            str(directory.source or directory.host_path),
            "directory",
            readOnly,
            directory.exclude,
            snapshot=directory.host_path,
        )
        return self._with(mounts=(*self.state.mounts, (path, mounted)))

    def withMountedFile(
        self, info: GraphQLResolveInfo[Any], path: str, source: str, **_: Any
    ) -> Any:
        file = self.engine._load(source, _File)
        mounted = MountedPath(str(file.source or file.host_path), "file", snapshot=file.host_path)
        return self._with(mounts=(*self.state.mounts, (path, mounted)))

    def withMountedCache(
        self, info: GraphQLResolveInfo[Any], path: str, cache: str, **_: Any
    ) -> Any:
        volume = self.engine._load(cache, _CacheVolume)
        return self._with(caches=(*self.state.caches, (path, volume.key)))

    def withWorkdir(self, info: GraphQLResolveInfo[Any], path: str, **_: Any) -> Any:
        return self._with(workdir=path)

    def withExec(
        self, info: GraphQLResolveInfo[Any], args: list[str], expect: str, **_: Any
    ) -> _Container:
        # The container an earlier exec left becomes a layer under this one: evaluated first,
        # and part of this exec's definition.
        last = self.state.last_exec
        layers = self.state.layers + ((last,) if last is not None else ())
        made = replace(self.state, exec_args=tuple(args), expect=expect, layers=layers)
        return _Container(self.engine, replace(made, last_exec=made))

    # --- evaluation ---

    def _run(self, info: GraphQLResolveInfo[Any]) -> ExecOutcome:
        with self._lock:
            if self._outcome is None:
                self._outcome = self.engine._run_exec(info, self.state)
            return self._outcome

    def sync(self, info: GraphQLResolveInfo[Any]) -> str:
        self._run(info)
        return self.id

    def exitCode(self, info: GraphQLResolveInfo[Any]) -> int:
        return self._run(info).exit_code

    def stdout(self, info: GraphQLResolveInfo[Any]) -> str:
        return self._run(info).stdout

    def stderr(self, info: GraphQLResolveInfo[Any]) -> str:
        return self._run(info).stderr

    def exists(
        self, info: GraphQLResolveInfo[Any], path: str, expectedType: str | None = None, **_: Any
    ) -> bool:
        files = self._run(info).files
        on_host = self._on_host(info, path)
        is_file = path in files or (on_host is not None and on_host.is_file())
        is_dir = any(p.startswith(path.rstrip("/") + "/") for p in files) or (
            on_host is not None and on_host.is_dir()
        )
        if expectedType == "DIRECTORY_TYPE":
            return is_dir
        if expectedType == "REGULAR_TYPE":
            return is_file
        return is_file or is_dir

    def directory(self, info: GraphQLResolveInfo[Any], path: str, **_: Any) -> _Directory:
        prefix = path.rstrip("/") + "/"
        files = {
            p[len(prefix) :]: d for p, d in self._run(info).files.items() if p.startswith(prefix)
        }
        on_host = self._on_host(info, path)
        if not files and on_host is not None and on_host.is_dir():
            return _Directory(self.engine, host_path=str(on_host))
        if not files:
            raise GraphQLError(f"lstat {path}: no such file or directory")
        return _Directory(self.engine, files=files)

    def file(self, info: GraphQLResolveInfo[Any], path: str, **_: Any) -> _File:
        files = self._run(info).files
        on_host = self._on_host(info, path)
        if path not in files and on_host is not None and on_host.is_file():
            return _File(self.engine, host_path=str(on_host))
        if path not in files:
            raise GraphQLError(f"lstat {path}: no such file or directory")
        return _File(self.engine, data=files[path])

    def _on_host(self, info: GraphQLResolveInfo[Any], path: str) -> Path | None:
        host_path = self._run(info).host_path
        return None if host_path is None else host_path(path)


setattr(_Container, "from", _Container.from_)


class _Query(_Object):
    typename = "Query"

    def container(self, info: GraphQLResolveInfo[Any], **_: Any) -> _Container:
        return _Container(self.engine, _ContainerState())

    def host(self, info: GraphQLResolveInfo[Any]) -> _Host:
        return _Host(self.engine)

    def setSecret(self, info: GraphQLResolveInfo[Any], name: str, plaintext: str) -> _Secret:
        return _Secret(self.engine, name, plaintext)

    def cacheVolume(self, info: GraphQLResolveInfo[Any], key: str, **_: Any) -> _CacheVolume:
        return _CacheVolume(self.engine, key)

    def node(self, info: GraphQLResolveInfo[Any], id: str) -> _Object:
        loaded: _Object = self.engine._load(id, _Object)
        return loaded

    def version(self, info: GraphQLResolveInfo[Any]) -> str:
        return self.engine.version

    # The LLM API lives in tests.fakes.dagger_llm (it builds on this module's types).
    def llm(
        self,
        info: GraphQLResolveInfo[Any],
        model: str | None = None,
        maxAPICalls: int | None = None,
    ) -> _Object:
        from tests.fakes.dagger_llm import new_llm

        return new_llm(self.engine, model, maxAPICalls)

    def env(self, info: GraphQLResolveInfo[Any], **_: Any) -> _Object:
        from tests.fakes.dagger_llm import new_env

        return new_env(self.engine)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Go's net.Listen asks for the system's somaxconn (4096 on Linux); socketserver's default of 5
    # would reset a burst of new connections that the engine accepts.
    request_queue_size = 1024
    engine: FakeDaggerEngine

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a cancelled or timed-out query) is not worth a traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _watch(connection: socket.socket, gone: threading.Event, done: threading.Event) -> None:
    """Set ``gone`` when the client closes the connection of a query still being answered (the
    engine's HTTP server cancels the request's context then)."""
    while not done.is_set():
        try:
            readable, _, _ = select.select([connection], [], [], 0.05)
            if readable and not connection.recv(1, socket.MSG_PEEK):
                gone.set()
                return
        except (OSError, ValueError):
            gone.set()
            return
        if readable:
            done.wait(0.05)  # the start of the client's next request: it is still there


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_POST(self) -> None:
        engine = self.server.engine
        if self.path != "/query":
            self._send(404, {"message": "not found"})
            return
        if self.headers.get("Authorization") != engine.expected_authorization:
            self._send(401, {"message": "unauthorized"}, close=True)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        gone, done = threading.Event(), threading.Event()
        threading.Thread(target=_watch, args=(self.connection, gone, done), daemon=True).start()
        trace_headers = {k: self.headers.get(k) for k in ("traceparent", "tracestate", "baggage")}
        try:
            answer = engine._execute(str(body["query"]), body.get("variables"), gone, trace_headers)
        finally:
            done.set()
        if answer is None:  # the engine died during this query
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self._send(200, answer)

    def _send(self, status: int, payload: Mapping[str, Any], *, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()


class FakeDaggerEngine:
    """The stand-in engine; use it as a context manager (or call :meth:`start` / :meth:`stop`).

    Attributes:
        behaviour: what ``withExec`` does (a function, :data:`DIE` or :data:`HANG`).
        missing_images: image addresses that do not exist in their registry (as written or
            normalised; the engine's ``not found`` resolution error).
        image_errors: image address (as written or normalised) -> the registry's answer when
            resolving it (``unexpected status ...: 503 Service Unavailable``, ``i/o timeout``...).
        version: what ``Query.version`` answers (the engine's release).
        registry: normalised tag -> the digest its registry gives it now (a made-up, stable one
            when absent); change it to move a tag.
        registry_outage: the network's answer to every registry request (None: reachable).
        pull_errors, import_errors: image (as written, normalised with its digest, or by name)
            -> why fetching or storing its layers fails when a container is first evaluated.
        content_store: images the engine holds (``name[:tag]@digest``), kept across sessions.
        registry_requests: every request to a registry (tag or digest resolutions).
        keep_results: keep successful exec results across sessions, as the engine's cache does
            (on by default; off runs every exec).
        die_during_export: write part of the first export, then die (the engine crashed
            mid-export); scripted files only, not exec mode's exports.
        hang_export: an export never answers (until the engine stops): a stuck engine.
        hang_introspection: never answer the schema introspection (an engine that accepts
            connections but never serves the session).
        exec_requests: every command really run (a kept result does not run again).
        layer_requests: every layer under a command really run (``requirements``' install).
        layer_behaviour: what a layer's exec does (default: it succeeds; in exec mode it runs on
            the host, a ``pip install`` with ``--dry-run`` so nothing is installed there).
        sessions: client sessions opened (each introspects the schema once).
        queries: every query received, in order.
        rejected: queries the official schema rejects (with the reasons).
        token: the session token (HTTP basic auth user).
        model: the LLM provider's side (:class:`tests.fakes.dagger_llm.ScriptedModel`).
    """

    def __init__(self, behaviour: ExecBehaviour = echo) -> None:
        self.behaviour: ExecBehaviour = behaviour
        self.missing_images: set[str] = set()
        self.image_errors: dict[str, str] = {}
        self.version = "v0.21.8"
        self.registry: dict[str, str] = {}
        self.registry_outage: str | None = None
        self.pull_errors: dict[str, str] = {}
        self.import_errors: dict[str, str] = {}
        self.content_store: set[str] = set()
        self.registry_requests: list[str] = []
        self.keep_results = True
        self.die_during_export = False
        self.hang_export = False
        self.hang_introspection = False
        self.sessions = 0
        self._kept: dict[tuple[Any, ...], ExecOutcome] = {}
        self.queries: list[ReceivedQuery] = []
        self.rejected: list[ReceivedQuery] = []
        self.exec_requests: list[ExecRequest] = []
        self.layer_requests: list[ExecRequest] = []
        self.layer_behaviour: ExecBehaviour | None = None
        self._flights: dict[tuple[Any, ...], _Flight] = {}
        self.token = secrets.token_hex(16)
        self.expected_authorization = (
            "Basic " + base64.b64encode(f"{self.token}:".encode()).decode()
        )
        self._calls: list[Call] = []
        self._objects: dict[str, _Object] = {}
        #: Cached calls (dagql/cache.go): call key -> the object it returned.
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._memo_lock = threading.RLock()
        #: Which session the stand-in serves now (see :meth:`new_session`).
        self.session_scope = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._server: _Server | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._root = _Query(self)
        self._host_exec: HostExec | None = None
        self._uploads: Path | None = None
        from tests.fakes.dagger_llm import ScriptedModel

        #: The LLM provider's side: scripted replies, accepted keys, received calls.
        self.model = ScriptedModel()
        #: Where the engine's own spans go (the CLI's span forwarder); None: no spans.
        self.span_exporter: SpanExporter | None = None
        self._tracer_provider: TracerProvider | None = None

    # --- lifecycle ---

    def start(self) -> FakeDaggerEngine:
        """Start listening on a free loopback port."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.engine = self
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, release any hanging query and close the port (exec mode: clean up)."""
        self._stopped.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            host_exec, self._host_exec = self._host_exec, None
            uploads, self._uploads = self._uploads, None
        if host_exec is not None:
            host_exec.close()
        if uploads is not None:
            shutil.rmtree(uploads, ignore_errors=True)

    def __enter__(self) -> FakeDaggerEngine:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (stays known after it died, so tests can reconnect to nothing)."""
        if self._port is None:
            raise RuntimeError("the stand-in engine has not been started")
        return self._port

    def session_env(self) -> dict[str, str]:
        """The environment variables that make the SDK use this engine as an existing session."""
        return {"DAGGER_SESSION_PORT": str(self.port), "DAGGER_SESSION_TOKEN": self.token}

    @property
    def alive(self) -> bool:
        """False once stopped or died."""
        return self._server is not None

    # --- what was asked ---

    @property
    def executions(self) -> int:
        """How many commands really ran (results the engine kept are not counted again)."""
        with self._lock:
            return len(self.exec_requests)

    def calls(self, field_name: str | None = None) -> list[Call]:
        """Resolved fields (optionally only those named ``field_name``), in order."""
        with self._lock:
            return [c for c in self._calls if field_name in (None, c.field_name)]

    def new_session(self) -> None:
        """End the session the stand-in serves and start a new one (a new ``dagger session``).

        The stand-in is one engine session, like the one ``dagger run`` provides to every
        connection of its process: what the engine caches per session or per client (``llm``,
        ``env``, ``host`` reads, tag resolutions) lives until this is called. What the engine
        keeps across sessions (exec results, pulled images) stays.
        """
        with self._memo_lock:
            self.session_scope += 1

    def memo(self, key: tuple[Any, ...], make: Callable[[], _T]) -> _T:
        """The object cached for the call ``key``, made by ``make`` the first time
        (dagql/cache.go: a call is answered from the cache; keys carry the session or client when
        the field is cached per session or per client, dagql/cache_inputs.go)."""
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = make()
            return self._memo[key]  # type: ignore[no-any-return]

    # --- internals used by resolvers and the handler ---

    def _register(self, obj: _Object) -> str:
        with self._lock:
            object_id = f"{obj.typename}:{next(self._ids)}"
            self._objects[object_id] = obj
        return object_id

    def _load(self, object_id: str, kind: type[Any]) -> Any:
        with self._lock:
            obj = self._objects.get(object_id)
        if not isinstance(obj, kind):
            raise GraphQLError(f"invalid ID {object_id!r}: not a {kind.__name__.lstrip('_')}")
        return obj

    def _upload(self, path: str, exclude: tuple[str, ...]) -> str:
        """The engine's copy of a host path as read now: what ``exclude`` leaves out is not
        uploaded; links stay links; modification times are kept."""
        with self._lock:
            if self._uploads is None:
                self._uploads = Path(tempfile.mkdtemp(prefix="aiop-standin-uploads-"))
            target = self._uploads / str(next(self._ids))
        source = Path(path)
        if source.is_dir():

            def ignore(folder: str, names: list[str]) -> set[str]:
                relative = Path(folder).relative_to(source)
                return {n for n in names if _excluded((relative / n).as_posix(), exclude)}

            shutil.copytree(source, target, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(source, target)
        return str(target)

    def _die(self) -> None:
        """The engine process is gone: stop serving and stop listening."""
        self._stopped.set()
        server, self._server = self._server, None
        if server is not None:
            # Called from a handler thread: serve_forever runs in another thread, so this returns.
            server.shutdown()
            server.server_close()

    def _hang(self, gone: threading.Event | None = None) -> None:
        """No answer until the engine stops (or, for an exec, until its request is gone: the
        engine then cancels it)."""
        waited = 0.0
        while waited < _HANG_LIMIT_S and not self._stopped.wait(0.05):
            if gone is not None and gone.is_set():
                return
            waited += 0.05

    def _maybe_hang_export(self) -> None:
        if self.hang_export:
            self._hang()
            raise GraphQLError("engine stopped")

    def _execute(
        self,
        text: str,
        variables: Mapping[str, Any] | None,
        gone: threading.Event | None = None,
        trace_headers: Mapping[str, str | None] | None = None,
    ) -> dict[str, Any] | None:
        """Answer one query; None means "drop the connection without answering"."""
        errors = _official_errors(text)
        headers = trace_headers or {}
        received = ReceivedQuery(
            text,
            variables,
            errors,
            headers.get("traceparent"),
            headers.get("tracestate"),
            headers.get("baggage"),
        )
        with self._lock:
            self.queries.append(received)
            if errors:
                self.rejected.append(received)
        if errors:
            return {"errors": [{"message": m} for m in errors], "data": None}
        if self.hang_introspection and "__schema" in text:
            self._hang()
            return {"errors": [{"message": "engine stopped"}], "data": None}

        if "__schema" in text:  # the SDK's introspection at connect: same question every time
            with self._lock:
                self.sessions += 1
            return _introspection(text)
        context: dict[str, Any] = {"die": False, "gone": gone or threading.Event(), "calls": []}
        started = time.time_ns()
        result = graphql_sync(
            _min_schema(),
            text,
            root_value=self._root,
            context_value=context,
            variable_values=dict(variables) if variables else None,
            field_resolver=self._resolve_field,
            type_resolver=lambda value, _info, _type: getattr(value, "typename", None),
        )
        self._emit_spans(received, context, started)
        if context["die"]:
            self._die()
            return None
        if context.get("drop"):
            return None
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [e.formatted for e in result.errors]
        return answer

    def _emit_spans(self, received: ReceivedQuery, context: dict[str, Any], started: int) -> None:
        """The engine's spans of one request, when :attr:`span_exporter` is set.

        core/telemetry.go: one span per resolved call, ``{Type}.{field}``, in the request's
        context, whose parent is the span the request's ``traceparent`` names (extracted per
        request, see :class:`ReceivedQuery`); ``dagger.io/dag.cached`` on a call answered from
        the cache (dagger/otel-go ``attrs.go``; here: the field that found a kept exec result).
        The engine's tracer provider sets no sampler, so Go's default ``ParentBased(
        AlwaysSample)`` applies: nothing is recorded under an unsampled parent, and a request
        without a parent would start a trace of its own (the stand-in leaves those out).
        """
        if self.span_exporter is None or received.trace_id is None:
            return
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        with self._lock:
            if self._tracer_provider is None:
                self._tracer_provider = TracerProvider(shutdown_on_exit=False)
                self._tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
            provider = self._tracer_provider
        parent = TraceContextTextMapPropagator().extract(
            {"traceparent": received.traceparent or ""}
        )
        tracer = provider.get_tracer("dagger.io/engine")
        cached: set[str] = context.get("cached", set())
        ended = time.time_ns()
        for call in context["calls"]:
            if call.type_name == "Query" and call.field_name == "node":
                continue  # loading an object by ID is no call of its own
            span = tracer.start_span(
                f"{call.type_name}.{call.field_name}", context=parent, start_time=started
            )
            if call.field_name in cached:
                span.set_attribute("dagger.io/dag.cached", True)
            span.end(end_time=ended)

    def _resolve_field(self, parent: Any, info: GraphQLResolveInfo[Any], /, **args: Any) -> Any:
        # graphql-core's default resolver takes ``source`` by keyword, which clashes with the
        # ``source`` argument of withMountedDirectory: resolve by hand.
        if not isinstance(parent, _Object):
            return default_field_resolver(parent, info, **args)
        call = Call(parent.typename, info.field_name, dict(args))
        with self._lock:
            self._calls.append(call)
        if isinstance(info.context, dict) and "calls" in info.context:
            info.context["calls"].append(call)
        value = getattr(parent, info.field_name, None)
        return value(info, **args) if callable(value) else value

    def _resolve_image(self, address: str) -> str:
        """``Container.from``: the image as ``name[:tag]@digest``, or the engine's error.

        core/schema/container.go ``from``: the address is normalised; a tag is resolved against
        its registry once per session (``fromSessionScopeInput``) and ``from`` is called again
        with the digest; a digest reference is resolved locally when the engine holds the image
        (engine/server/resolver/resolver.go ``tryLocalCanonicalConfig``), else by the registry.
        """
        try:
            ref = normalized_image_ref(address)
        except ValueError as exc:
            raise GraphQLError(f"failed to parse image address {address}: {exc}") from exc
        if "@" in ref:
            with self._lock:
                if ref in self.content_store:
                    return ref
            self._ask_registry(address, ref)
            return ref
        key = ("from", self.session_scope, ref)
        return self.memo(key, lambda: f"{ref}@{self._ask_registry(address, ref)}")

    def _ask_registry(self, address: str, ref: str) -> str:
        """The digest the registry gives ``ref`` (a tag or a digest), or the resolution error."""
        with self._lock:
            self.registry_requests.append(ref)
        cause = (
            self.registry_outage
            or self.image_errors.get(address)
            or self.image_errors.get(ref)
            or (f"{ref}: not found" if {address, ref} & self.missing_images else None)
        )
        if cause is not None:
            raise GraphQLError(f'failed to resolve image "{ref}" (platform: "{PLATFORM}"): {cause}')
        if "@" in ref:
            return ref.rpartition("@")[2]
        return self.registry.setdefault(ref, "sha256:" + hashlib.sha256(ref.encode()).hexdigest())

    def _pull(self, address: str, canonical: str) -> None:
        """Fetch the image's layers, lazily, when a container from it is first evaluated
        (core/container_image.go ``ContainerFromImageRefLazy.Evaluate``: ``pull image %q`` and
        ``import image %q`` errors); what was pulled stays for the engine's life."""
        with self._lock:
            if canonical in self.content_store:
                return
        named = {address, canonical, canonical.partition("@")[0]}
        cause = self.registry_outage or next(
            (self.pull_errors[n] for n in named if n in self.pull_errors), None
        )
        if cause is not None:
            raise GraphQLError(f'pull image "{canonical}": {cause}')
        imported = next((self.import_errors[n] for n in named if n in self.import_errors), None)
        if imported is not None:
            raise GraphQLError(f'import image "{canonical}": {imported}')
        with self._lock:
            self.content_store.add(canonical)

    def _run_exec(
        self, info: GraphQLResolveInfo[Any], state: _ContainerState, *, layer: bool = False
    ) -> ExecOutcome:
        """The exec's outcome: kept, shared with an identical exec in flight, or run now.

        dagql/cache.go: a completed call's result is kept, an error is not (``Cache.wait``);
        identical calls in flight are run once, every caller waiting for the same outcome or
        error (``ongoingCalls``); when the last caller's request is gone, the call is cancelled
        and nothing is kept (``wait``: ``oc.cancel`` when ``waiters`` reaches 0).
        """
        if state.image is None:
            raise GraphQLError("no image: call from() first")
        if state.exec_args is None:
            raise GraphQLError("no command has been set")
        key = state.definition()
        gone: threading.Event = info.context.setdefault("gone", threading.Event())
        with self._lock:
            kept = self._kept.get(key) if self.keep_results else None
            if kept is not None:
                info.context.setdefault("cached", set()).add(info.field_name)
                return kept
            flight = self._flights.get(key)
            owner = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            flight.callers.append(gone)
        if not owner:
            while not flight.done.wait(0.05):
                if gone.is_set():
                    raise GraphQLError("context canceled")
            if flight.error is not None:
                raise flight.error
            assert flight.outcome is not None
            return flight.outcome
        try:
            outcome = self._evaluate(info, state, layer)
            if all(caller.is_set() for caller in flight.callers):
                raise GraphQLError("context canceled")  # nobody waits for it: cancelled
        except GraphQLError as exc:
            flight.error = exc
            raise
        except BaseException:
            flight.error = GraphQLError("engine stopped")
            raise
        else:
            flight.outcome = outcome
            if self.keep_results:
                with self._lock:
                    self._kept.setdefault(key, outcome)
            return outcome
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def _evaluate(
        self, info: GraphQLResolveInfo[Any], state: _ContainerState, layer: bool
    ) -> ExecOutcome:
        """Evaluate the layers under the exec, pull the image, then run the command."""
        assert state.image is not None and state.exec_args is not None
        if state.layers:  # the container the previous exec left (it evaluates its own first)
            self._run_exec(info, state.layers[-1], layer=True)
        assert state.canonical is not None
        self._pull(state.image, state.canonical)
        request = ExecRequest(
            image=state.image,
            args=list(state.exec_args),
            env=dict(state.env),
            secret_env={name: secret.plaintext for name, secret in state.secrets},
            workdir=state.workdir,
            mounts=dict(state.mounts),
            caches=dict(state.caches),
            expect=state.expect,
            setup=tuple(layer.exec_args for layer in state.layers if layer.exec_args),
        )
        with self._lock:
            (self.layer_requests if layer else self.exec_requests).append(request)
        behaviour: ExecBehaviour | ExecOutcome = self.behaviour
        if layer:
            behaviour = self.layer_behaviour or (EXEC if behaviour is EXEC else _layer_done)
        if callable(behaviour):  # a function may also answer with a scripted behaviour
            behaviour = behaviour(request)
        if behaviour is DIE:
            info.context["die"] = True
            raise _Die("engine died")
        if behaviour is DROP:
            info.context["drop"] = True
            raise _Die("connection reset")
        if behaviour is HANG:
            self._hang(info.context["gone"])
            raise GraphQLError("context canceled")
        if behaviour is EXEC:
            outcome = self._exec_on_host().run(request, layer=layer)
        else:
            assert isinstance(behaviour, ExecOutcome)
            outcome = behaviour
        if outcome.exit_code not in VALID_EXIT_CODES[state.expect]:
            # core/exec_error.go: the message is the executor's error with the trace it happened
            # in (dagql/idtui golden: "exit code: 1 [traceparent:...]"); cmd is the exec's args.
            trace = f"{secrets.token_hex(16)}-{secrets.token_hex(8)}"
            raise GraphQLError(
                f"exit code: {outcome.exit_code} [traceparent:{trace}]",
                extensions={
                    "_type": "EXEC_ERROR",
                    "cmd": request.args,
                    "exitCode": outcome.exit_code,
                    "stdout": _exec_error_output(outcome.stdout),
                    "stderr": _exec_error_output(outcome.stderr),
                },
            )
        return outcome

    def _exec_on_host(self) -> HostExec:
        from tests.fakes.host_exec import HostExec  # it builds on this module's types

        with self._lock:
            if self._host_exec is None:
                self._host_exec = HostExec(Path(tempfile.mkdtemp(prefix="aiop-standin-")))
            return self._host_exec

    def _export(self, info: GraphQLResolveInfo[Any], files: Mapping[Path, str | bytes]) -> None:
        for path, data in sorted(files.items()):
            path.parent.mkdir(parents=True, exist_ok=True)
            raw = data.encode() if isinstance(data, str) else data
            if self.die_during_export:
                # A crash mid-export: half of the first file is on disk, then the engine is gone.
                path.write_bytes(raw[: len(raw) // 2])
                info.context["die"] = True
                raise _Die("engine died during export")
            path.write_bytes(raw)
