"""The platform's one settings object: every ``AIOP_*`` environment variable, typed and described.

An entry point (a CLI, the ``data_pipeline`` flow, ``run_step``, ``run_agent``) calls
:func:`load_settings` once when it is not given a :class:`Settings`, and passes the object (or the
values it needs) down. No other module reads or writes an ``AIOP_*`` variable; a test
(``tests/test_settings_access.py``) fails on any that does. Values a child process needs go to it
explicitly: :meth:`Settings.child_environment` builds that environment in this one place.

A bad value is an :class:`~adapters.errors.InvalidInputError` naming the variable and the fix, found
before any work starts. The configuration reference page is generated from the fields here
(``aiop settings --markdown``).

Examples:
    >>> settings = Settings(backend="local", retry={"attempts": 1})
    >>> (settings.backend, settings.retry_policy().attempts, settings.breaker_policy().fail_max)
    ('local', 1, 5)
    >>> Settings(breaker_redis_url="redis://:hunter2@cache:6379/0").breaker_redis_url
    SecretStr('**********')
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from adapters.breakers.policy import BreakerPolicy
from adapters.chaos import FaultPlan, parse_plan
from adapters.errors import InvalidInputError
from adapters.policy import Policy, bounds_text, default_text, problem
from adapters.redaction import redact_url
from adapters.reference import Block
from adapters.retry_policy import RetryPolicy

if TYPE_CHECKING:
    from adapters.tracing import TraceConfig

__all__ = [
    "ENV_PREFIX",
    "Settings",
    "current_values",
    "environment_without_settings",
    "load_settings",
    "reference_markdown",
    "setting_variables",
    "settings_in_environment",
    "variable_name",
    "with_reference",
    "write_reference",
]

#: The prefix of every platform variable.
ENV_PREFIX = "AIOP_"

#: Where ``mkdocs serve`` serves the docs: the docs base when ``AIOP_DOCS_URL`` is unset and no
#: local Prefect server (which serves the docs beside its UI) is in use.
DEFAULT_DOCS_URL = "http://127.0.0.1:8000/"

#: The longest a Dagger session may take to open: a day (asyncio and thread timeouts past
#: ``threading.TIMEOUT_MAX`` overflow).
MAX_TIMEOUT_S = 86_400.0


class Settings(BaseSettings):
    """Every platform setting, read from ``AIOP_<FIELD>`` environment variables (unset or empty: the
    default). Frozen: an entry point loads it once and passes it down.

    Build one in code to configure a run without touching the environment:
    ``Settings(backend="local", retry_backoff_s=0)``.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        frozen=True,
        extra="ignore",
        validate_default=True,
        # Tracing fields are read from the standard OTEL_* variables (their validation_alias);
        # code still builds them by field name: Settings(otel_exporter_otlp_endpoint=...).
        validate_by_name=True,
    )

    # -- where steps run -------------------------------------------------------------------
    backend: Literal["auto", "dagger", "local"] = Field(
        default="auto",
        description="Where steps run: `auto` (Dagger when an engine is reachable, else the local"
        " runner, said in one line), `dagger` (always Dagger) or `local` (host processes, no"
        " container isolation). `--backend` overrides it.",
    )
    dagger_first_run_timeout_s: float = Field(
        default=600.0,
        gt=0,
        le=MAX_TIMEOUT_S,
        allow_inf_nan=False,
        description="Seconds allowed to open a flow run's one Dagger session (a machine's first"
        " run downloads the Dagger CLI and pulls the engine image). Under `auto`, a session that"
        " does not open in time means the local runner, said in one line.",
    )
    dagger_provision_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=MAX_TIMEOUT_S,
        allow_inf_nan=False,
        description="Seconds allowed to open a Dagger session again after the engine broke, and"
        " for a step's own session outside a flow run (a hung Dagger CLI is stopped then).",
    )
    engine_limit: str | None = Field(
        default=None,
        description="Name of a Prefect global concurrency limit every step takes one slot of while"
        " it uses the engine. `aiop deploy` sets it for the runs of its deployments;"
        " unset: no limit.",
    )
    # -- files and folders -----------------------------------------------------------------
    work_dir: Path = Field(
        default=Path(".aiop/work"),
        description="Where step outputs are kept between runs (`<work>/<step>-<key>`);"
        " `--work-dir` overrides it. Safe to delete: the next run recomputes.",
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Host folder of the local runner's cache volumes (`<dir>/<name>`), for"
        " agents that declare `caches:`. Unset: `~/.cache/aiop/caches`.",
    )
    installation_key_file: Path | None = Field(
        default=None,
        description="The key under which secret values enter a step's cache key (HMAC-SHA256),"
        " made on first use with permissions 0600. Deleting it is safe: steps with secrets run"
        " once more. Give every worker the same file to share cached results. Unset:"
        " `$XDG_CONFIG_HOME/aiop/installation.key` (`~/.config/aiop/installation.key`).",
    )
    agents_path: str = Field(
        default="",
        description="Extra folders (or files) of agent definitions, separated by `os.pathsep`"
        " (`:` on Linux and macOS), read after the shipped `agents/definitions/`.",
    )
    # -- Prefect and the docs --------------------------------------------------------------
    prefect_server: Literal["background", "embedded"] = Field(
        default="background",
        description="With no `PREFECT_API_URL`: `background` uses (and on first use starts) the"
        " local Prefect server kept between runs; `embedded` uses Prefect's temporary server per"
        " run. Ignored when `PREFECT_API_URL` is set.",
    )
    docs_url: str | None = Field(
        default=None,
        description="Base URL of this documentation site in CLI messages and UI links"
        " (`<url>troubleshooting/#<anchor>`). Unset: the site the local Prefect server serves"
        " beside its UI (`http://127.0.0.1:4201/` by default; `aiop server status`"
        " shows it), else `http://127.0.0.1:8000/` (`mkdocs serve`). Set it when the"
        " docs are published elsewhere.",
    )
    debug: bool = Field(
        default=False,
        description="`1` (or `true`): an unexpected error of Prefect's machinery shows its"
        " traceback instead of the one-paragraph message, to report it.",
    )
    # -- fault drills ----------------------------------------------------------------------
    chaos: str | None = Field(
        default=None,
        description="A fault plan injected into the steps of a run, e.g."
        " `step=transform,kind=transient-exit,times=2`; `--chaos` overrides it. For drills"
        " only.",
    )
    # -- retries ---------------------------------------------------------------------------
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="How steps are retried: one `AIOP_RETRY_<FIELD>` variable per field of"
        " the retry policy. The fields set apply over an agent's `retry:` section.",
    )
    # -- circuit breakers ------------------------------------------------------------------
    breaker_redis_url: SecretStr | None = Field(
        default=None,
        description="Redis URL (`redis://host:6379/0`, a password allowed) where breakers keep"
        " their state, so every worker sees the same open or closed circuit. Never shown:"
        " logs and messages print it with the password masked. Unset: state in this process.",
    )
    breaker: BreakerPolicy = Field(
        default_factory=BreakerPolicy,
        description="When a circuit opens and how it recovers: one `AIOP_BREAKER_<FIELD>`"
        " variable per field of the breaker policy, for every breaker whose agent declares no"
        " `breaker:` section.",
    )

    # -- tracing: the standard OpenTelemetry variables (read under their own names) ---------
    otel_sdk_disabled: bool = Field(
        default=False,
        validation_alias="OTEL_SDK_DISABLED",
        description="`true`: no spans are recorded or exported, whatever else is set.",
    )
    otel_traces_exporter: Literal["otlp", "console", "none"] | None = Field(
        default=None,
        validation_alias="OTEL_TRACES_EXPORTER",
        description="`otlp` (to the OTLP endpoint), `console` (spans printed to stderr) or"
        " `none`. Unset: `otlp` when an endpoint is set, else `none` (nothing recorded, no"
        " cost).",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="Base URL of the OTLP receiver (collector or backend), e.g."
        " `http://127.0.0.1:4318`; traces go to `<url>/v1/traces` over HTTP. Setting it turns"
        " tracing on: one trace per run (guides/tracing).",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        description="Full URL traces are sent to, used as it is (overrides"
        " `OTEL_EXPORTER_OTLP_ENDPOINT` for traces).",
    )
    otel_exporter_otlp_protocol: Literal["http/protobuf", "grpc"] | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_PROTOCOL",
        description="`http/protobuf` (the default) or `grpc` (needs the `otlp-grpc` extra:"
        " `pip install 'ai-orchestration-platform[otlp-grpc]'`).",
    )
    otel_exporter_otlp_traces_protocol: Literal["http/protobuf", "grpc"] | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        description="The protocol for traces (overrides `OTEL_EXPORTER_OTLP_PROTOCOL`).",
    )
    otel_exporter_otlp_headers: SecretStr | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_HEADERS",
        description="Headers sent with every export, `key=value,key2=value2` (values"
        " percent-encoded), e.g. `authorization=Bearer%20TOKEN`. Never shown: masked in spans,"
        " logs and step output.",
    )
    otel_exporter_otlp_traces_headers: SecretStr | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        description="Headers for trace exports, over those of `OTEL_EXPORTER_OTLP_HEADERS`.",
    )
    otel_exporter_otlp_timeout: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_S * 1000,
        allow_inf_nan=False,
        validation_alias="OTEL_EXPORTER_OTLP_TIMEOUT",
        description="Milliseconds one export may take, retries included. Unset: 10000.",
    )
    otel_exporter_otlp_traces_timeout: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_S * 1000,
        allow_inf_nan=False,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        description="Milliseconds one trace export may take (overrides"
        " `OTEL_EXPORTER_OTLP_TIMEOUT`).",
    )
    otel_service_name: str | None = Field(
        default=None,
        validation_alias="OTEL_SERVICE_NAME",
        description="`service.name` of the spans. Unset: `aiop` (a step's own process gets"
        " `<name>-step`).",
    )
    otel_resource_attributes: str | None = Field(
        default=None,
        validation_alias="OTEL_RESOURCE_ATTRIBUTES",
        description="More resource attributes, `key=value,key2=value2` (values percent-encoded),"
        " e.g. `deployment.environment.name=ci`. Secret values and URL credentials are masked.",
    )
    traceparent: str | None = Field(
        default=None,
        validation_alias="TRACEPARENT",
        description="A W3C trace context (`00-<trace id>-<span id>-<flags>`) the run's trace"
        " continues, e.g. from a traced CI job. A malformed value is ignored.",
    )
    trace_url: str | None = Field(
        default=None,
        description="A link to a trace in your tracing backend, `{trace_id}` filled in, shown in"
        " the run summary, e.g. `http://127.0.0.1:6006/redirects/traces/{trace_id}` (Arize"
        " Phoenix). Unset: the trace id alone.",
    )
    trace_engine: bool = Field(
        default=True,
        description="`0`: the Dagger CLI the platform starts does not export the engine's spans"
        " (pulls, cache hits, execs) to the trace.",
    )
    trace_flush_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=MAX_TIMEOUT_S,
        allow_inf_nan=False,
        description="Seconds a command waits at exit for its last spans to be sent (an"
        " unreachable collector costs at most this, and one warning line).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment: no ``.env`` file and no secrets folder are read."""
        return init_settings, _Environment(settings_cls)

    @field_validator("backend", "prefect_server", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator(
        "chaos",
        "engine_limit",
        "docs_url",
        "otel_exporter_otlp_endpoint",
        "otel_exporter_otlp_traces_endpoint",
        "otel_service_name",
        "otel_resource_attributes",
        "traceparent",
        "trace_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator(
        "otel_traces_exporter",
        "otel_exporter_otlp_protocol",
        "otel_exporter_otlp_traces_protocol",
        mode="before",
    )
    @classmethod
    def _otel_word(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        word = value.strip().lower()
        if word == "http/json":
            raise InvalidInputError(
                f"{variable_name(str(info.field_name))}=http/json is not supported: the platform"
                " sends OTLP as http/protobuf (the default, which every OTLP receiver accepts) or"
                " grpc; set one of those, or unset it"
            )
        return word or None

    @field_validator("otel_exporter_otlp_endpoint", "otel_exporter_otlp_traces_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise InvalidInputError(
                f"{variable_name(str(info.field_name))}={redact_url(value)!r} is not an http://"
                " or https:// URL with a host; set the URL of your OTLP receiver, e.g."
                " http://127.0.0.1:4318, or unset it to turn tracing off"
            )
        return value

    @field_validator("otel_exporter_otlp_headers", "otel_exporter_otlp_traces_headers")
    @classmethod
    def _headers(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            _pairs(value.get_secret_value(), variable_name(str(info.field_name)), secret=True)
        return value

    @field_validator("otel_resource_attributes")
    @classmethod
    def _resource(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _pairs(value, variable_name(str(info.field_name)))
        return value

    @field_validator("trace_url")
    @classmethod
    def _trace_url(cls, value: str | None) -> str | None:
        if value is not None and "{trace_id}" not in value:
            raise InvalidInputError(
                f"{variable_name('trace_url')}={redact_url(value)!r} has no {{trace_id}}"
                " placeholder; write where your backend shows a trace, e.g."
                " http://127.0.0.1:6006/redirects/traces/{trace_id}, or unset it"
            )
        return value

    @model_validator(mode="after")
    def _grpc_installed(self) -> Settings:
        if (
            self._traces_protocol() == "grpc"
            and self._traces_exporter() == "otlp"
            and importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is None
        ):
            names = [
                variable_name(n)
                for n in ("otel_exporter_otlp_traces_protocol", "otel_exporter_otlp_protocol")
                if getattr(self, n) == "grpc"
            ]
            raise InvalidInputError(
                f"{names[0]}=grpc needs the OTLP/gRPC exporter, which is not installed;"
                " install it with pip install 'ai-orchestration-platform[otlp-grpc]', or"
                " set it to http/protobuf (every OTLP backend accepts it on port 4318)"
            )
        return self

    @field_validator("chaos")
    @classmethod
    def _plan_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_plan(value, source=variable_name("chaos"))  # raises InvalidInputError
        return value

    def with_changes(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` (field=value); the environment is not read again.

        A policy field takes a policy or a mapping of some of its fields, applied over the
        current one (``retry={"attempts": 4}``).

        Raises:
            InvalidInputError: a change has a bad value.

        Examples:
            >>> Settings(backend="local").with_changes(retry={"attempts": 4}).retry_policy().attempts
            4
        """
        # Every field is given, so the environment (a source below the arguments) decides nothing;
        # then the copy says "set" only for what was set here or in this object.
        values = {name: getattr(self, name) for name in type(self).model_fields}
        for name, change in changes.items():
            current = values.get(name)
            if isinstance(current, Policy) and isinstance(change, Mapping):
                given = {f: getattr(current, f) for f in current.model_fields_set}
                changes = {**changes, name: {**given, **change}}
        try:
            changed = type(self)(**{**values, **changes})
        except ValidationError as exc:
            raise InvalidInputError(_describe(exc, changes)) from None
        object.__setattr__(changed, "__pydantic_fields_set__", self.model_fields_set | set(changes))
        return changed

    # -- derived values --------------------------------------------------------------------
    def retry_policy(self, base: RetryPolicy | None = None) -> RetryPolicy:
        """``base`` (default: the defaults) with the retry settings that were set applied over it.

        Examples:
            >>> Settings(retry={"attempts": 5}).retry_policy(RetryPolicy(attempts=2)).attempts
            5
            >>> Settings().retry_policy(RetryPolicy(attempts=2)).attempts
            2
        """
        return self.retry.over(base or RetryPolicy())

    def breaker_policy(self, base: BreakerPolicy | None = None) -> BreakerPolicy:
        """``base`` (default: the defaults) with the breaker settings that were set applied over it.

        Examples:
            >>> Settings(breaker={"fail_max": 2}).breaker_policy().fail_max
            2
        """
        return self.breaker.over(base or BreakerPolicy())

    def chaos_plan(self) -> FaultPlan | None:
        """A fresh fault plan from ``chaos`` (its hit counts at zero), or None."""
        return parse_plan(self.chaos, source=variable_name("chaos")) if self.chaos else None

    def agent_paths(self) -> list[Path]:
        """The folders of ``agents_path``, empty entries skipped.

        Examples:
            >>> Settings(agents_path=os.pathsep.join(["a", "", "b"])).agent_paths()
            [PosixPath('a'), PosixPath('b')]
        """
        return [Path(p) for p in self.agents_path.split(os.pathsep) if p.strip()]

    def redis_url(self) -> str | None:
        """The breaker Redis URL in clear, for the one client that connects with it."""
        return self.breaker_redis_url.get_secret_value() if self.breaker_redis_url else None

    def _traces_protocol(self) -> str:
        return (
            self.otel_exporter_otlp_traces_protocol
            or self.otel_exporter_otlp_protocol
            or "http/protobuf"
        )

    def _traces_exporter(self) -> str:
        if self.otel_sdk_disabled:
            return "none"
        if self.otel_traces_exporter is not None:
            return self.otel_traces_exporter
        endpoint = self.otel_exporter_otlp_traces_endpoint or self.otel_exporter_otlp_endpoint
        return "otlp" if endpoint else "none"

    def trace_config(self) -> TraceConfig:
        """Where spans go (:mod:`adapters.tracing`), from the standard ``OTEL_*`` variables.

        Nothing set means ``exporter="none"``: nothing is recorded. The traces URL is
        ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as it is, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` with
        ``/v1/traces`` (HTTP) or as it is (gRPC), else the specification's default
        (``http://localhost:4318/v1/traces``, ``http://localhost:4317`` for gRPC) when
        ``OTEL_TRACES_EXPORTER=otlp`` asks for OTLP without an endpoint.

        Examples:
            >>> Settings().trace_config().exporter
            'none'
            >>> Settings(otel_exporter_otlp_endpoint="http://c:4318").trace_config().traces_url
            'http://c:4318/v1/traces'
        """
        from adapters.tracing import TraceConfig

        protocol = self._traces_protocol()
        if self.otel_exporter_otlp_traces_endpoint:
            url = self.otel_exporter_otlp_traces_endpoint
        elif self.otel_exporter_otlp_endpoint:
            base = self.otel_exporter_otlp_endpoint
            url = base if protocol == "grpc" else base.rstrip("/") + "/v1/traces"
        else:
            url = (
                "http://localhost:4317" if protocol == "grpc" else "http://localhost:4318/v1/traces"
            )
        headers: dict[str, str] = {}
        for secret in (self.otel_exporter_otlp_headers, self.otel_exporter_otlp_traces_headers):
            if secret is not None:
                headers.update(_pairs(secret.get_secret_value(), "", secret=True))
        resource = _pairs(self.otel_resource_attributes or "", "")
        timeout_ms = self.otel_exporter_otlp_traces_timeout or self.otel_exporter_otlp_timeout
        return TraceConfig(
            exporter=self._traces_exporter(),  # type: ignore[arg-type]
            traces_url=url,
            protocol=protocol,  # type: ignore[arg-type]
            headers=headers,
            timeout_s=(timeout_ms or 10_000) / 1000,
            service_name=self.otel_service_name or resource.get("service.name") or "aiop",
            resource=resource,
            parent=self.traceparent,
            url_template=self.trace_url,
            engine=self.trace_engine,
            flush_timeout_s=self.trace_flush_timeout_s,
        )

    def child_environment(self, **changes: Any) -> dict[str, str]:
        """The ``AIOP_*`` variables that give a child process these settings (with ``changes``).

        Only values that differ from the defaults (and the policy fields that were set) are
        written; secrets in clear, since the child needs them: pass the result as the child's
        environment, never log it.

        Examples:
            >>> Settings(backend="local").child_environment(retry={"attempts": 4})
            {'AIOP_BACKEND': 'local', 'AIOP_RETRY_ATTEMPTS': '4'}
        """
        settings = self.with_changes(**changes) if changes else self
        env: dict[str, str] = {}
        for variable, (owner, name, info) in _variables().items():
            value = getattr(owner(settings), name)
            policy = owner(settings)
            was_set = isinstance(policy, Policy) and name in policy.model_fields_set
            if value == info.get_default(call_default_factory=True) and not was_set:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[variable] = default_text(value)
        return env

    def environment_for_child(self, base: Mapping[str, str], **changes: Any) -> dict[str, str]:
        """``base`` without its settings variables (``AIOP_*``, the standard ``OTEL_*`` ones), plus
        :meth:`child_environment`: the whole environment of a child process that must run with
        these settings and no others.

        Examples:
            >>> Settings().environment_for_child({"PATH": "/bin", "AIOP_CHAOS": "kind=timeout"})
            {'PATH': '/bin'}
        """
        kept = {k: v for k, v in base.items() if not _is_setting_variable(k)}
        return {**kept, **self.child_environment(**changes)}


#: The standard variables some settings are read from (``OTEL_*``, ``TRACEPARENT``).
_STANDARD_VARIABLES = frozenset(
    info.validation_alias.upper()
    for info in Settings.model_fields.values()
    if isinstance(info.validation_alias, str)
)


def _pairs(text: str, variable: str, *, secret: bool = False) -> dict[str, str]:
    """``key=value,key2=value2`` (keys and values percent-encoded, the W3C baggage form the
    OpenTelemetry specification gives ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_EXPORTER_OTLP_HEADERS``)
    as a dict.

    Raises:
        InvalidInputError: an entry has no ``=`` or no key; the message names ``variable`` and,
            for a ``secret`` one, never quotes its text.

    Examples:
        >>> _pairs("service.namespace=shop,team=data%20eng", "OTEL_RESOURCE_ATTRIBUTES")
        {'service.namespace': 'shop', 'team': 'data eng'}
    """
    found: dict[str, str] = {}
    for number, entry in enumerate(text.split(","), start=1):
        if not entry.strip():
            continue
        key, eq, value = entry.partition("=")
        if not eq or not key.strip():
            shown = f"entry {number}" if secret else f"{entry.strip()!r}"
            raise InvalidInputError(
                f"{variable} is not a list of key=value pairs separated by commas ({shown} has"
                f" {'no =' if not eq else 'no key'}); write e.g. key=value,key2=value2 with"
                " commas and other special characters in values percent-encoded (%2C), or"
                " unset it"
            )
        found[unquote(key.strip())] = unquote(value.strip())
    return found


#: The settings fields that are policies: each of their fields is a variable of its own,
#: ``AIOP_<POLICY>_<FIELD>`` (``AIOP_RETRY_ATTEMPTS``).
_POLICIES: dict[str, type[Policy]] = {"retry": RetryPolicy, "breaker": BreakerPolicy}


class _Environment(EnvSettingsSource):
    """The environment, each policy field read from its own variable (``AIOP_RETRY_ATTEMPTS``);
    an unknown ``AIOP_*`` variable is ignored, as every other one is."""

    def __call__(self) -> dict[str, Any]:
        data = {k: v for k, v in super().__call__().items() if k not in _POLICIES}
        for policy, model in _POLICIES.items():
            found = {
                field: value
                for field in model.model_fields
                if (value := self.env_vars.get(variable_name(f"{policy}_{field}").lower()))
                and value.strip()
            }
            if found:
                data[policy] = found
        return data


def _variables() -> dict[str, tuple[Any, str, FieldInfo]]:
    """Every variable, in field order: ``AIOP_BACKEND`` ... ``AIOP_RETRY_ATTEMPTS`` ..., with a
    function from the settings to the object that holds its field, the field name and its info."""
    found: dict[str, tuple[Any, str, FieldInfo]] = {}
    for name, info in Settings.model_fields.items():
        model = _POLICIES.get(name)
        if model is None:
            found[variable_name(name)] = (lambda s: s, name, info)
            continue
        for field, sub in model.model_fields.items():
            found[variable_name(f"{name}_{field}")] = (
                lambda s, policy=name: getattr(s, policy),
                field,
                sub,
            )
    return found


def setting_variables() -> dict[str, FieldInfo]:
    """Every ``AIOP_*`` variable the settings read, with its field (type, default, bounds,
    description), in the order of the reference page.

    Examples:
        >>> list(setting_variables())[:2]
        ['AIOP_BACKEND', 'AIOP_DAGGER_FIRST_RUN_TIMEOUT_S']
        >>> "AIOP_RETRY_ATTEMPTS" in setting_variables()
        True
    """
    return {variable: info for variable, (_, _, info) in _variables().items()}


@contextlib.contextmanager
def settings_in_environment(
    settings: Settings, environ: MutableMapping[str, str] | None = None
) -> Iterator[None]:
    """Within the block, ``environ``'s (default ``os.environ``) settings variables (``AIOP_*`` and
    the standard ``OTEL_*`` ones) say exactly ``settings``; afterwards they are as before.

    For a harness that runs the user's code path in this process, whose entry points read the
    environment (the benchmarks): the one place that writes these variables.

    Examples:
        >>> env = {"AIOP_CHAOS": "kind=timeout", "PATH": "/bin"}
        >>> with settings_in_environment(Settings(backend="local"), env):
        ...     sorted(env)
        ['AIOP_BACKEND', 'PATH']
        >>> sorted(env)
        ['AIOP_CHAOS', 'PATH']
    """
    env = os.environ if environ is None else environ
    saved = {k: v for k, v in env.items() if _is_setting_variable(k)}
    for key in saved:
        del env[key]
    env.update(settings.child_environment())
    try:
        yield
    finally:
        for key in [k for k in env if _is_setting_variable(k)]:
            del env[key]
        env.update(saved)


def environment_without_settings(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without any setting's variable (a child that must start from the defaults)."""
    return Settings().environment_for_child(base)


def variable_name(field: str) -> str:
    """The environment variable of a settings field: ``AIOP_<FIELD>``, or the standard name a
    tracing field is read from.

    Examples:
        >>> variable_name("retry_attempts")
        'AIOP_RETRY_ATTEMPTS'
        >>> variable_name("otel_exporter_otlp_endpoint")
        'OTEL_EXPORTER_OTLP_ENDPOINT'
    """
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias
    return ENV_PREFIX + field.upper()


def _is_setting_variable(name: str) -> bool:
    """``name`` is the environment variable of a setting (``AIOP_*``, or a standard one)."""
    upper = name.upper()
    return upper.startswith(ENV_PREFIX) or upper in _STANDARD_VARIABLES


def _field_of(location: str) -> str:
    """The field an error location names (pydantic names a standard variable by itself)."""
    for name, info in Settings.model_fields.items():
        if info.validation_alias == location:
            return name
    return location


#: The settings :func:`load_settings` last read without overrides, and the settings variables
#: they were read from.
_last_read: tuple[tuple[tuple[str, str], ...], Settings] | None = None


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment once, with ``overrides`` (field=value) over them.

    Without overrides, while the settings variables (``AIOP_*`` and the standard ones) are what
    they were at the last such call, that call's (frozen) object is returned: a caller that loads
    per call (``run_step`` without ``settings``) pays a look at the environment, not a validation.

    Raises:
        InvalidInputError: a variable has a bad value; one paragraph names it, what is wrong,
            and how to fix it (the value itself is not repeated for a secret setting).

    Examples:
        >>> load_settings(backend="local").backend
        'local'
        >>> load_settings() is load_settings()
        True
    """
    global _last_read
    if overrides:
        return _validated(overrides)
    variables = tuple(sorted((k, v) for k, v in os.environ.items() if _is_setting_variable(k)))
    last = _last_read
    if last is not None and last[0] == variables:
        return last[1]
    settings = _validated({})
    _last_read = (variables, settings)
    return settings


def _validated(overrides: Mapping[str, Any]) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise InvalidInputError(_describe(exc, overrides)) from None


def _describe(exc: ValidationError, overrides: Mapping[str, Any]) -> str:
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]] or ["?"]
        loc[0] = _field_of(loc[0])
        info = Settings.model_fields.get(loc[0])
        where = ".".join(loc) if loc[0] in overrides else variable_name("_".join(loc))
        secret = info is not None and "SecretStr" in str(info.annotation)
        shown = "" if secret else f"={error.get('input')!r}"
        problems.append(f"{where}{shown} {problem(Settings, error)} or unset it")
    base = (os.environ.get(variable_name("docs_url")) or "").strip()
    where = (
        f"{base.rstrip('/')}/reference/configuration/"
        if base
        else "the configuration reference (docs/reference/configuration.md)"
    )
    return "; ".join(problems) + f". Every setting is described in {where}"


# -- the reference page ------------------------------------------------------------------------

#: The generated table of docs/reference/configuration.md.
TABLE = Block("settings-table", "aiop settings --markdown")
BEGIN_MARK, END_MARK = TABLE.begin, TABLE.end


def _type_text(annotation: object) -> str:
    text = str(annotation).replace("typing.", "").replace("pathlib.", "")
    text = text.replace("<class '", "").replace("'>", "")
    text = text.replace("pydantic.types.", "")
    optional = re.fullmatch(r"Optional\[(.*)\]", text)
    if optional:
        text = f"{optional.group(1)} | None"
    return text.replace("Literal[", "one of [").replace("|", "\\|")


def reference_markdown() -> str:
    """The settings table of the configuration reference, between its marks: variable, type,
    default, meaning.

    Examples:
        >>> "| `AIOP_DEBUG` |" in reference_markdown()
        True
    """
    return TABLE.wrap(_table())


def _table() -> str:
    lines = ["| Variable | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    for variable, info in setting_variables().items():
        default = "unset" if info.default is None else f"`{default_text(info.default)}`"
        if info.default == "":
            default = "unset"
        bounds = bounds_text(info)
        kind = _type_text(info.annotation) + (f", {bounds}" if bounds else "")
        lines.append(f"| `{variable}` | {kind} | {default} | {info.description} |")
    return "\n".join(lines)


def with_reference(page: str) -> str:
    """``page`` with the text between :data:`BEGIN_MARK` and :data:`END_MARK` regenerated.

    Raises:
        ValueError: the page does not hold the two marks.
    """
    return TABLE.regenerate(page, _table())


def current_values(settings: Settings) -> dict[str, str]:
    """Every variable with the value ``settings`` holds, as ``aiop settings`` shows it (secrets
    masked, ``(unset)`` for an unset optional value)."""
    shown: dict[str, str] = {}
    for variable, (owner, name, info) in _variables().items():
        value = getattr(owner(settings), name)
        shown[variable] = (
            "(unset)" if value is None and info.default is None else default_text(value)
        )
    return shown


def write_reference(page: str) -> int:
    """Regenerate the table inside ``page`` (``aiop settings --write PAGE``); the exit code."""
    return TABLE.write(page, _table())


if __name__ == "__main__":
    print("python -m adapters.settings is now `aiop settings`", file=sys.stderr)
    sys.exit(2)
