"""The step contract: one plain-data spec in, one plain-data result out.

A flow never cares which runner ran its step: every runner takes a :class:`StepSpec` and returns a
:class:`StepResult`. Paths on the left of ``mounts`` and on the right of ``outputs`` are host paths;
everything else (``workdir``, mount targets, output sources, cache targets) is a container path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from adapters.errors import InvalidSpecError
from adapters.redaction import MASK, mask_secrets

__all__ = [
    "MASK",
    "OUTPUT_TAIL_CHARS",
    "Backend",
    "Mount",
    "StepResult",
    "StepSpec",
    "mask_secrets",
    "tail",
]

#: How many characters of stdout and stderr a StepResult keeps (the tail end).
OUTPUT_TAIL_CHARS = 8_000

Backend = Literal["dagger", "local"]

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CACHE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


# -- the naming rules, in one place (agents/spec.py applies them to definitions) ----------------


def check_name(value: str, kind: str = "step", example: str = "transform-0") -> str:
    """``value`` if it is a usable step (or agent) name, else ValueError naming the rule.

    Examples:
        >>> check_name("transform-0")
        'transform-0'
    """
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a usable {kind} name; use 1-63 lower-case letters, digits, '.', '_'"
            f" or '-', starting with a letter or digit (e.g. '{example}')"
        )
    return value


def check_image(value: str) -> str:
    """``value`` if it can be an image reference (no blanks), else ValueError with an example."""
    if not value.strip() or any(c.isspace() for c in value):
        raise ValueError(
            f"{value!r} is not an image reference; write it as 'name[:tag]',"
            " e.g. 'python:3.12-slim'"
        )
    return value


def check_env_name(key: str) -> str:
    """``key`` if it is a valid environment variable name, else ValueError naming the rule."""
    if not _ENV_RE.match(key):
        raise ValueError(
            f"{key!r} is not a valid environment variable name; use letters, digits and '_',"
            " not starting with a digit"
        )
    return key


def check_cache_name(name: str) -> str:
    """``name`` if it is a usable cache volume name, else ValueError naming the rule."""
    if not _CACHE_RE.match(name):
        raise ValueError(f"cache name {name!r} is not usable; use letters, digits, '.', '_' or '-'")
    return name


def _container_path(value: str, field: str) -> str:
    if not value.startswith("/"):
        raise ValueError(
            f"{field} {value!r} must be an absolute container path; write it as '/{value.lstrip('./')}'"
        )
    return str(PurePosixPath(value))


def _host_path(value: str, field: str) -> str:
    if not value.strip():
        raise ValueError(f"{field} has an empty host path; give the folder or file to use")
    return value


class Mount(BaseModel):
    """Where a host path appears inside the step, and whether the step may write to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: str = Field(description="Absolute container path the host path is mounted at.")
    writable: bool = Field(
        default=False, description="Let the step write to it (read-only otherwise)."
    )

    @field_validator("target")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return _container_path(value, "mount target")


class StepSpec(BaseModel):
    """Everything a runner needs to execute one step, and nothing about how.

    Examples:
        >>> from adapters import StepSpec
        >>> spec = StepSpec(
        ...     name="hello",
        ...     image="python:3.12-slim",
        ...     args=["python", "-c", "print('hello')"],
        ...     timeout_s=60,
        ... )
        >>> spec.args[0]
        'python'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Step name: lower-case letters, digits, '.', '_', '-'.")
    image: str = Field(description="Container image the step runs in, e.g. 'python:3.12-slim'.")
    args: list[str] = Field(
        description="The command as a list of arguments (never a shell string)."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Plain environment variables.")
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Environment variables whose values are secret: never logged, masked in output.",
    )
    workdir: str | None = Field(default=None, description="Absolute container working directory.")
    mounts: dict[str, Mount] = Field(
        default_factory=dict,
        description="Host path -> container path (a string, read-only) or {target, writable}.",
    )
    outputs: dict[str, str] = Field(
        default_factory=dict,
        description="Container path -> host path, exported after the step exits 0.",
    )
    timeout_s: Annotated[float, Field(gt=0)] = Field(
        default=3600.0, description="Seconds the step may run before it is stopped."
    )
    caches: dict[str, str] = Field(
        default_factory=dict,
        description="Cache volume name -> container path; kept between runs.",
    )
    transient_exit_codes: frozenset[int] = Field(
        default_factory=frozenset,
        description="Exit codes that mean 'try again' for this step (e.g. 75, EX_TEMPFAIL).",
    )
    requirements: list[str] = Field(
        default_factory=list,
        description=(
            "Python packages, pinned (e.g. 'duckdb==1.1.3'), that the step's image needs. Dagger"
            " installs them once, as an image layer the engine caches by image and requirements;"
            " the local runner uses the host's environment instead."
        ),
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "step", "transform-0")

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return check_image(value)

    @field_validator("args", mode="before")
    @classmethod
    def _args_not_shell(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "args must be a list of strings, not one shell string; split it, e.g."
                " ['python', '-c', 'print(1)'] (use ['sh', '-c', '...'] if you really need a shell)"
            )
        return value

    @field_validator("args")
    @classmethod
    def _args_present(cls, value: list[str]) -> list[str]:
        if not value or not value[0]:
            raise ValueError("args is empty; give the command to run, e.g. ['python', 'step.py']")
        return value

    @field_validator("env", "secrets")
    @classmethod
    def _env_names(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        for key in value:
            check_env_name(key)
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str | None) -> str | None:
        return None if value is None else _container_path(value, "workdir")

    @field_validator("mounts", mode="before")
    @classmethod
    def _mount_shorthand(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                _host_path(str(host), "mounts"): {"target": m} if isinstance(m, str) else m
                for host, m in value.items()
            }
        return value

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, value: dict[str, str]) -> dict[str, str]:
        return {
            _container_path(src, "output"): _host_path(dst, "outputs") for src, dst in value.items()
        }

    @field_validator("caches")
    @classmethod
    def _caches(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            check_cache_name(name)
        return {name: _container_path(path, "cache") for name, path in value.items()}

    @model_validator(mode="after")
    def _consistent(self) -> StepSpec:
        both = set(self.env) & set(self.secrets)
        if both:
            raise ValueError(
                f"{sorted(both)} appear in both env and secrets; keep each variable in one of them"
            )
        targets = [m.target for m in self.mounts.values()] + list(self.caches.values())
        if len(targets) != len(set(targets)):
            raise ValueError("two mounts or caches share a container path; give each its own")
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, source: str = "step spec") -> StepSpec:
        """Validate ``data`` and raise :class:`InvalidSpecError` naming the field and the fix.

        Examples:
            >>> StepSpec.parse({"name": "x", "image": "alpine", "args": "echo hi"})
            Traceback (most recent call last):
            ...
            adapters.errors.InvalidSpecError: step spec: field 'args': ...
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidSpecError(describe_validation_error(exc, source)) from None

    def secret_values(self) -> list[str]:
        """The secret values, longest first (for masking)."""
        return sorted(
            (v.get_secret_value() for v in self.secrets.values() if v.get_secret_value()),
            key=len,
            reverse=True,
        )

    def redacted_command(self) -> str:
        """The command as one line for logs, secret values masked."""
        return mask_secrets(" ".join(_quote(a) for a in self.args), self.secret_values())


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One paragraph naming each bad field and what to do, without echoing secret values."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"field {loc!r}: {msg}")
    return f"{source}: " + "; ".join(parts)


class StepResult(BaseModel):
    """What a step did. A non-zero ``exit_code`` is a result here, not an exception."""

    model_config = ConfigDict(frozen=True)

    step: str
    exit_code: int
    stdout: str = Field(description="Tail of standard output, secret values masked.")
    stderr: str = Field(description="Tail of standard error, secret values masked.")
    duration_s: float
    outputs: dict[str, str] = Field(
        default_factory=dict, description="Container path -> host path of each exported output."
    )
    backend: Backend
    attempt: int = 1

    @property
    def ok(self) -> bool:
        """True when the step exited 0."""
        return self.exit_code == 0


def tail(text: str, limit: int = OUTPUT_TAIL_CHARS) -> str:
    """The last ``limit`` characters of ``text``, cut at a line start when possible."""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    newline = cut.find("\n")
    return cut[newline + 1 :] if 0 <= newline < limit // 2 else cut


def _quote(arg: str) -> str:
    return arg if arg and not any(c.isspace() or c in "'\"$`\\" for c in arg) else repr(arg)
