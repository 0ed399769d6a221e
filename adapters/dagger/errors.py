"""Translating the Dagger SDK's errors: the one table, the messages, secret scrubbing.

:data:`ERROR_RULES` is the one table of foreign errors (the Dagger SDK's, those of the libraries
beneath it, the OS's): each row says which platform error a foreign class becomes before the
session is up (``connecting``) and once it is (``running``), and what refines it. The reference
page's table is generated from it (``aiop errors --write
docs/reference/errors.md``; a test checks it), and a test fails if a Dagger exception class is
missing from it. :func:`translate_error` applies it, once, at the boundary; the rest of this module
builds the platform error's message and masks secret values.

Examples:
    >>> translate_error(dagger.TransportError("boom"), connected=True).__class__.__name__
    'EngineConnectionError'
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import dagger
import gql.transport.exceptions as gql_errors
import graphql
import httpx
import tenacity
from dagger.mod._exceptions import ModuleError

from adapters.contract import StepSpec, mask_secrets, tail
from adapters.errors import (
    AiopError,
    EngineConnectionError,
    EngineUnavailableError,
    InvalidSpecError,
    RegistryUnavailableError,
    StepFailedError,
)
from adapters.reference import Block

__all__ = [
    "ENGINE_HINT",
    "ERROR_RULES",
    "FOREIGN_ERRORS",
    "ErrorRule",
    "describe",
    "engine_error",
    "image_error",
    "missing_command",
    "normalized_image",
    "scrub",
    "signal_hint",
    "step_failed",
    "translate_error",
    "user_input_error",
]

#: What to do when no engine can be used.
ENGINE_HINT = (
    "start Docker (the Dagger CLI runs its engine there), or point DAGGER_SESSION_PORT /"
    " _EXPERIMENTAL_DAGGER_RUNNER_HOST at a running engine"
)

#: How the engine reports an image it cannot resolve (dagger/dagger core/schema/container.go,
#: ``from``), and the older buildkit wording; ``ref`` is the normalised reference.
_RESOLVE_FAILURES = (
    re.compile(
        r'failed to resolve image "(?P<ref>[^"]+)" \(platform: "[^"]*"\): (?P<cause>.*)', re.S
    ),
    re.compile(r"failed to resolve source metadata for (?P<ref>\S+?): (?P<cause>.*)", re.S),
    # The layers are fetched lazily, when the container is first evaluated
    # (core/container_image.go: ContainerFromImageRefLazy.Evaluate); ``ref`` has the digest.
    re.compile(r'pull image "(?P<ref>[^"]+)": (?P<cause>.*)', re.S),
)
#: The engine fetched the layers but could not store them (core/container_image.go, the same
#: Evaluate: its snapshotter's ImportImage): a problem of the engine's host, not the registry.
_IMPORT_FAILURE = re.compile(r'import image "(?P<ref>[^"]+)": (?P<cause>.*)', re.S)
#: The image exists but has no build for the engine's platform (engine/server/resolver): only
#: another image or a platform-specific digest can help.
_NO_PLATFORM = re.compile(r"no manifest matches requested platform", re.I)
#: The engine appends the trace it failed in to some messages (util/scrub, dagger/otel-go
#: TrackOrigin); a reader needs none of it.
_TRACEPARENT = re.compile(r" \[traceparent:[0-9a-f]+-[0-9a-f]+\]")
#: The engine's answer to an address that is not an image reference (core/schema/container.go).
_BAD_REFERENCE = re.compile(r"failed to parse image address (?P<ref>\S+): (?P<cause>.*)", re.S)
#: A registry's answers that retrying cannot change: the image or tag does not exist, or this
#: engine may not pull it.
_REFUSED = re.compile(
    r"not found|manifest unknown|name unknown|repository does not exist|pull access denied"
    r"|unauthorized|denied|forbidden|insufficient_scope|(?<![\w.])(?:401|403|404)(?![\w.])",
    re.I,
)
#: A registry's answers that may change on their own: timeouts, rate limits, server errors,
#: networks that are down.
_PASSING = re.compile(
    r"timeout|timed out|deadline exceeded|too many requests|toomanyrequests|rate limit"
    r"|service unavailable|bad gateway|internal server error|connection (?:refused|reset)"
    r"|no such host|temporary failure|network is unreachable|\beof\b"
    r"|(?<![\w.])(?:429|5\d\d)(?![\w.])",
    re.I,
)
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


def normalized_image(image: str) -> str | None:
    """The reference the engine names for ``image``, or None when it is not a valid one.

    Docker's normalisation, as the engine applies it before resolving (``ParseNormalizedNamed``
    then ``TagNameOnly``): Docker Hub's domain and ``library/`` are added, and ``:latest`` when
    there is neither tag nor digest.

    Examples:
        >>> normalized_image("python:3.12-slim")
        'docker.io/library/python:3.12-slim'
        >>> normalized_image("ghcr.io/acme/tool")
        'ghcr.io/acme/tool:latest'
    """
    name, _, digest = image.partition("@")
    tag = ""
    if name.rfind(":") > name.rfind("/"):
        name, _, tag = name.rpartition(":")
    head, _, rest = name.partition("/")
    domain, path = (
        (head, rest)
        if rest and ("." in head or ":" in head or head == "localhost")
        else ("docker.io", name)
    )
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    if not path or not all(_COMPONENT.match(part) for part in path.split("/")):
        return None
    if not tag and not digest:
        tag = "latest"
    return f"{domain}/{path}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def image_error(detail: str, spec: StepSpec) -> AiopError | None:
    """The error for an engine message about resolving or pulling the step's image, or None if
    it is not one.

    InvalidSpecError when retrying cannot help (no such image or tag, access refused, not a valid
    reference, no build for the engine's platform); RegistryUnavailableError, which is retried,
    when the registry may answer later (timeouts, 429, 5xx, network trouble, or an answer not
    understood); EngineConnectionError when the engine could not store the pulled image.
    """
    imported = _IMPORT_FAILURE.search(detail)
    if imported is not None:
        return EngineConnectionError(
            f"the Dagger engine fetched image {spec.image!r} but could not store it"
            f" ({imported.group('cause').strip()}); check the engine host's disk space; the step"
            " is retried",
            step=spec.name,
        )
    bad = _BAD_REFERENCE.search(detail)
    if bad is not None:
        return InvalidSpecError(
            f"image {spec.image!r} is not a valid image reference ({bad.group('cause').strip()});"
            " write it as [registry/]repository[:tag][@digest], lowercase, e.g. python:3.12-slim",
            step=spec.name,
        )
    found = next((m for m in (r.search(detail) for r in _RESOLVE_FAILURES) if m), None)
    if found is None:
        return None
    ref, cause = found.group("ref"), found.group("cause").strip()
    named = ref if ref == normalized_image(spec.image) else f"{ref}, from {spec.image!r}"
    if _NO_PLATFORM.search(cause):
        return InvalidSpecError(
            f"image {spec.image!r} has no build for the engine's platform ({cause}); use an image"
            " published for it, or the digest of the image's multi-platform index",
            step=spec.name,
        )
    if _REFUSED.search(cause) and not _PASSING.search(cause):
        return InvalidSpecError(
            f"image {spec.image!r} cannot be pulled: the registry refused {named} ({cause}); check"
            " the image name and tag, and log in to the registry if it is private (docker login,"
            " or the engine's registry credentials)",
            step=spec.name,
        )
    pinned = "@" in spec.image
    hint = (
        "the step is retried"
        if pinned
        else "the step is retried. The engine looks a tag up in its registry once in every"
        " session, even when it holds the image: to run without the registry, pin the image by"
        f" digest ({spec.image}@sha256:..., the digest an earlier run's log gives as 'image"
        f" {spec.image} resolved to ...')"
    )
    return RegistryUnavailableError(
        f"the registry of image {spec.image!r} could not be reached or failed while the Dagger"
        f" engine resolved or pulled {named} ({cause}); this may pass: {hint}",
        step=spec.name,
    )


class ErrorRule(NamedTuple):
    """How one foreign exception class is translated (matched with ``isinstance``, first wins).

    Attributes:
        foreign: the foreign exception class.
        connecting: the platform error while the session is being set up.
        running: the platform error once the session is up.
        refined: what refines ``running`` (from the error's own content), for the reference page.
    """

    foreign: type[BaseException]
    connecting: type[AiopError]
    running: type[AiopError]
    refined: str = ""


_Unavailable, _Broken = EngineUnavailableError, EngineConnectionError

#: The one table, most specific class first.
ERROR_RULES: tuple[ErrorRule, ...] = (
    ErrorRule(
        dagger.ExecError,
        _Unavailable,
        StepFailedError,
        "a failed command: the runner returns it as a `StepResult` with its exit code (then"
        " `StepFailedError` in `run_step`); `InvalidSpecError` when the engine's init found no"
        " `args[0]` in the image",
    ),
    ErrorRule(
        dagger.QueryError,
        _Unavailable,
        _Broken,
        "`InvalidSpecError` when it is about the spec (the registry refused the image: not found,"
        " denied, no build for the engine's platform, not a valid reference; a mount source is"
        " missing); `RegistryUnavailableError` when resolving or pulling the image met a"
        " registry that could not be reached or failed; `EngineConnectionError` when storing a"
        " pulled image failed",
    ),
    ErrorRule(
        dagger.InvalidQueryError,
        _Unavailable,
        _Broken,
        "the SDK could not build a query against the engine's schema (version skew)",
    ),
    ErrorRule(
        dagger.ClientConnectionError,
        _Unavailable,
        _Broken,
        "no session: closed port, bad token, failed introspection",
    ),
    ErrorRule(
        dagger.TransportError,
        _Unavailable,
        _Broken,
        "the HTTP exchange broke: the engine died, the connection dropped, a request timed out",
    ),
    ErrorRule(dagger.ClientError, _Unavailable, _Broken),
    ErrorRule(dagger.DownloadError, _Unavailable, _Unavailable, "the CLI could not be downloaded"),
    ErrorRule(dagger.SessionError, _Unavailable, _Unavailable, "the CLI could not start a session"),
    ErrorRule(dagger.ProvisionError, _Unavailable, _Unavailable),
    ErrorRule(
        ModuleError, _Unavailable, _Broken, "module-runtime errors; never raised to a client"
    ),
    ErrorRule(dagger.DaggerError, _Unavailable, _Broken),
    # The libraries beneath the SDK and the OS, for when the SDK lets one through unwrapped.
    ErrorRule(
        tenacity.RetryError,
        _Unavailable,
        _Broken,
        "retries gave up: only with the SDK's retries on, which the runner turns off",
    ),
    ErrorRule(gql_errors.TransportError, _Unavailable, _Broken),
    ErrorRule(httpx.HTTPError, _Unavailable, _Broken),
    ErrorRule(graphql.GraphQLError, _Unavailable, _Broken),
    ErrorRule(
        ConnectionRefusedError,
        _Unavailable,
        _Unavailable,
        "nothing listens where the engine should be",
    ),
    ErrorRule(OSError, _Unavailable, _Broken),
)

#: Every foreign exception class the table translates (what a caller catches around SDK calls).
FOREIGN_ERRORS: tuple[type[BaseException], ...] = tuple(rule.foreign for rule in ERROR_RULES)


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
    """
    detail = mask_secrets(describe(exc), spec.secret_values() if spec else [])
    rule = next((r for r in ERROR_RULES if isinstance(exc, r.foreign)), None)
    target: type[AiopError] = EngineConnectionError if connected else EngineUnavailableError
    if rule is not None:
        target = rule.running if connected else rule.connecting
    if target is StepFailedError and isinstance(exc, dagger.ExecError):
        return step_failed(int(exc.exit_code), str(exc.stderr), spec)
    if connected and spec is not None and isinstance(exc, dagger.QueryError):
        user_error = user_input_error(detail, spec)
        if user_error is not None:
            return user_error
    return engine_error(target, detail, spec.name if spec else None)


#: The table's block in docs/reference/errors.md.
TABLE = Block("dagger-error-table", "aiop errors --markdown")


def reference_markdown() -> str:
    """The table as the reference page shows it: foreign class, before and after the session
    is up, what refines it."""

    def name(cls: type[BaseException]) -> str:
        module = cls.__module__.split(".")[0]
        return f"`{cls.__qualname__}`" if module == "builtins" else f"`{module}.{cls.__qualname__}`"

    lines = [
        "| Foreign error (first match wins) | Before the session is up | Once it is up | Refined |",
        "| --- | --- | --- | --- |",
    ]
    for rule in ERROR_RULES:
        lines.append(
            f"| {name(rule.foreign)} | `{rule.connecting.__name__}` | `{rule.running.__name__}`"
            f" | {rule.refined or '-'} |"
        )
    return "\n".join(lines)


def describe(exc: BaseException) -> str:
    """``ClassName: message`` of a foreign exception (the last attempt's, for a RetryError)."""
    if isinstance(exc, tenacity.RetryError) and exc.last_attempt.failed:
        last = exc.last_attempt.exception()
        return f"retries exhausted, last error: {describe(last) if last else 'unknown'}"
    text = _TRACEPARENT.sub("", str(exc)).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def step_failed(exit_code: int, stderr: str, spec: StepSpec | None) -> StepFailedError:
    """The error for a command that exited ``exit_code``, its stderr tail masked."""
    secrets = spec.secret_values() if spec else []
    return StepFailedError(
        f"the command exited {exit_code}",
        step=spec.name if spec else "?",
        exit_code=exit_code,
        stderr_tail=tail(mask_secrets(stderr, secrets)),
        transient_exit=spec is not None and exit_code in spec.transient_exit_codes,
    )


def missing_command(
    spec: StepSpec, exit_code: int, stdout: str, stderr: str
) -> InvalidSpecError | None:
    """InvalidSpecError when the engine's init could not start ``args[0]``, else None.

    The engine's init looks a bare command up in ``$PATH`` and executes a path; when that fails it
    prints ``exec: "x": executable file not found in $PATH`` (or ``fork/exec /x: ...``) on stderr
    and exits 1 (dagger/dagger ``cmd/init/main.go``): an exec result, not a query error. Only that
    exact output counts, so a command of the user's that prints something else is a plain failure.
    """
    command = spec.args[0]
    said = stderr.strip()
    started = said == f'exec: "{command}": executable file not found in $PATH' or (
        "/" in command and said.startswith(f"fork/exec {command}: ") and "\n" not in said
    )
    if exit_code != 1 or stdout.strip() or not started:
        return None
    return InvalidSpecError(
        f"the command {command!r} does not exist in image {spec.image!r} (the engine said:"
        f" {said}); fix args[0], or use an image that has it, or install it in the image",
        step=spec.name,
    )


def signal_hint(exit_code: int) -> str | None:
    """One line explaining an exit code of 129-191 (the command was killed by a signal)."""
    if not 128 < exit_code < 192:
        return None
    number = exit_code - 128
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    why = ""
    if number == signal.SIGKILL:
        why = (
            "; most often the kernel's out of memory (OOM) killer: the command needed more memory"
            " than the engine's host (or its memory limit) allows"
        )
    elif number == signal.SIGTERM:
        why = "; something stopped it from outside (the engine shutting down?)"
    return f"the command was killed by {name} (exit {exit_code}){why}"


def engine_error(target: type[AiopError], detail: str, step: str | None) -> AiopError:
    """An engine-side error of class ``target`` with the hint that fits it."""
    if issubclass(target, EngineUnavailableError):
        return target(f"no Dagger engine could be used ({detail}); {ENGINE_HINT}", step=step)
    return target(f"the Dagger engine failed while the step ran ({detail})", step=step)


def user_input_error(detail: str, spec: StepSpec) -> AiopError | None:
    """The error an engine message calls for when it is about the spec (image, command, mount).

    Returns None when the message is about something else (the engine itself).
    """
    about_image = image_error(detail, spec)
    if about_image is not None:
        return about_image
    lowered = detail.lower()
    if "invalid reference format" in lowered:
        return InvalidSpecError(
            f"image {spec.image!r} is not a valid image reference ({detail}); write it as"
            " [registry/]repository[:tag][@digest], lowercase, e.g. python:3.12-slim",
            step=spec.name,
        )
    image = normalized_image(spec.image) or spec.image
    if (image.lower() in lowered or spec.image.lower() in lowered) and (
        _REFUSED.search(detail) and not _PASSING.search(detail)
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


def scrub(exc: BaseException, secrets: Sequence[str]) -> None:
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


if __name__ == "__main__":
    print("python -m adapters.dagger.errors is now `aiop errors`", file=sys.stderr)
    sys.exit(2)
