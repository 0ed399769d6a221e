"""``AgentSpec``: one agent definition, validated when it is loaded.

An agent is a named, declared worker: a container command (``kind: container``) or an LLM working
in a container through Dagger (``kind: llm``), with the capabilities it offers, its parameters, its
environment, the *names* of the secrets it needs (values come from the environment or a Prefect
Secret block at run time, never from the file), its timeout, retry and breaker policies, and
resource hints. This module imports no Prefect, so validating definitions stays fast.

Examples:
    >>> agent = AgentSpec.model_validate({
    ...     "name": "hello", "description": "Says hello.", "capabilities": ["greet"],
    ...     "image": "python:3.12-slim", "parameters": {"who": {"description": "who to greet"}},
    ...     "command": ["python", "-c", "print('hello {who}')"],
    ... })
    >>> agent.to_step_spec({"who": "world"}).args
    ['python', '-c', "print('hello world')"]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, NoReturn

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from adapters.breakers.policy import BreakerPolicy
from adapters.contract import (
    Mount,
    StepSpec,
    check_cache_name,
    check_env_name,
    check_image,
    check_name,
)
from adapters.errors import InvalidInputError
from adapters.llm_route import provider_of_model, route_problem, timeout_problem
from agents.sections import (
    LlmSection,
    Parameter,
    ResourceHints,
    RetrySection,
    check_path_template,
    split_root,
)
from agents.template import CommandTemplate

__all__ = ["PROVIDER_KEYS", "AgentSpec", "ParamValue"]

#: Secret names that hold an LLM provider key; an ``llm`` agent must declare one of them.
PROVIDER_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY")

_CAPABILITY_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")

ParamValue = str | int | float | Path
#: The pydantic error type of the checks that span several fields (the message has the fix).
DEFINITION_ERROR = "agent_definition"


class AgentSpec(BaseModel):
    """One agent definition (one YAML file in ``agents/definitions`` or an ``agents_path`` folder).

    Examples:
        >>> spec = AgentSpec.model_validate({
        ...     "name": "echo", "description": "Echoes.", "capabilities": ["echo"],
        ...     "image": "alpine:3", "command": ["echo", "hi"],
        ... })
        >>> spec.kind, spec.capabilities, spec.breaker_name
        ('container', ('echo',), 'agent:echo')
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Unique agent name: lower-case letters, digits, '.', '_', '-'.")
    description: str = Field(min_length=1, description="One line: what the agent does.")
    kind: Literal["container", "llm"] = Field(default="container", description="How it runs.")
    capabilities: tuple[str, ...] = Field(
        min_length=1, description="What it can do, e.g. [validate]."
    )
    priority: int = Field(
        default=0, description="Preferred among equally healthy agents: higher wins."
    )
    image: str | None = Field(default=None, description="Container image (container agents).")
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    command: CommandTemplate | None = Field(default=None, description="Argument-list template.")
    llm: LlmSection | None = Field(default=None, description="Prompt and model of an llm agent.")
    env: dict[str, str] = Field(default_factory=dict, description="Plain environment variables.")
    secrets: tuple[str, ...] = Field(default=(), description="Names of secret variables it needs.")
    caches: dict[str, str] = Field(
        default_factory=dict, description="Cache name -> container path."
    )
    requirements: tuple[str, ...] = Field(
        default=(),
        description=(
            "Python packages the command needs in its image, e.g. [duckdb] (container agents);"
            " see StepSpec.requirements."
        ),
    )
    timeout_s: Annotated[float, Field(gt=0)] = Field(default=3600.0)
    retry: RetrySection = Field(default_factory=RetrySection)
    breaker: BreakerPolicy | None = Field(
        default=None, description="Unset: the breaker settings, else the defaults."
    )
    resources: ResourceHints = Field(default_factory=ResourceHints)
    docs: str | None = Field(default=None, description="Link to the agent's documentation.")

    _source: Path | None = PrivateAttr(default=None)

    # -- field checks (in declaration order: `parameters` is known when `command` is checked) ----

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "agent", "validate-duckdb")

    @field_validator("capabilities")
    @classmethod
    def _capabilities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cap in value:
            if not _CAPABILITY_RE.match(cap):
                raise ValueError(
                    f"{cap!r} is not a capability name; use lower-case letters, digits and '-',"
                    " starting with a letter (e.g. 'transform')"
                )
        if len(set(value)) != len(value):
            raise ValueError("a capability is listed twice; list each once")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return None if value is None else check_image(value)

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, value: dict[str, Parameter]) -> dict[str, Parameter]:
        for name in value:
            if not re.match(r"^[a-z_][a-z0-9_]*$", name):
                raise ValueError(
                    f"{name!r} is not a parameter name; use lower-case letters, digits and '_'"
                    " (e.g. input_dir)"
                )
        return value

    @field_validator("command")
    @classmethod
    def _command_parameters(
        cls, value: CommandTemplate | None, info: ValidationInfo
    ) -> CommandTemplate | None:
        if value is None or "parameters" not in info.data:
            return value
        declared: dict[str, Parameter] = info.data["parameters"]
        _check_declared(value.parameters(), declared)
        for name in value.required_parameters():
            if not declared[name].is_required and declared[name].default is None:
                raise ValueError(
                    f"parameter {name!r} is optional but used outside an optional group; make it"
                    f" required, give it a default, or wrap its item in {{optional: [...]}}"
                )
        return value

    @field_validator("llm")
    @classmethod
    def _prompt_parameters(
        cls, value: LlmSection | None, info: ValidationInfo
    ) -> LlmSection | None:
        if value is not None and "parameters" in info.data:
            declared: dict[str, Parameter] = info.data["parameters"]
            _check_declared(value.placeholders(), declared)
            _check_root_defaults(value, declared)
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            check_env_name(key)
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            check_env_name(key)
        if len(set(value)) != len(value):
            raise ValueError("a secret is listed twice; list each once")
        return value

    @field_validator("caches")
    @classmethod
    def _caches(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            check_cache_name(name)
            if not path.startswith("/"):
                raise ValueError(f"cache {name!r} path {path!r} must be an absolute container path")
        return value

    @field_validator("docs")
    @classmethod
    def _docs(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise ValueError(
                f"{value!r} is not a link; give a URL (https://...) or a docs page path"
                " (guides/data-pipeline/)"
            )
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> AgentSpec:
        both = set(self.env) & set(self.secrets)
        if both:
            _fail("secrets", f"{', '.join(sorted(both))} also set in env; keep each in one of them")
        if self.kind == "container":
            if self.llm is not None:
                _fail("llm", "a container agent has no llm: section; remove it or set kind: llm")
            for field, example in (
                ("image", "image: python:3.12-slim"),
                ("command", "command: [python, -m, mytool, '{input}']"),
            ):
                if getattr(self, field) is None:
                    _fail(field, f"a container agent needs one; add it, e.g. {example}")
        else:
            if self.llm is None:
                _fail("llm", "an llm agent needs one; add e.g. llm: {prompt: 'Summarize {report}'}")
            if self.command is not None:
                _fail("command", "an llm agent has no command (the LLM decides); remove it")
            for field, what in (
                ("image", self.image),
                ("env", self.env),
                ("caches", self.caches),
                ("requirements", self.requirements),
            ):
                if what:
                    _fail(
                        field,
                        "an llm agent runs no container of its own (the model works on its"
                        " llm.inputs and llm.outputs); remove it",
                    )
            keys = [k for k in self.secrets if k in PROVIDER_KEYS]
            if not keys:
                _fail(
                    "secrets",
                    "an llm agent needs its provider key here, e.g. secrets: [ANTHROPIC_API_KEY]"
                    f" (one of {', '.join(PROVIDER_KEYS)})",
                )
            if self.llm.key is None and len(keys) > 1:
                _fail(
                    "llm",
                    f"secrets list {len(keys)} provider keys ({', '.join(keys)}); say which one"
                    f" the model uses, e.g. llm: {{key: {keys[0]}}}",
                )
            if self.llm.key is not None and self.llm.key not in keys:
                _fail(
                    "llm",
                    f"key {self.llm.key!r} is not among the agent's secrets as a provider key; add"
                    f" it to secrets: (one of {', '.join(PROVIDER_KEYS)}) or fix the name",
                )
            if self.llm.model is not None:  # the engine gives the model's provider its own key
                try:
                    problem = route_problem(self.llm.model, self.llm.key or keys[0])
                    provider = provider_of_model(self.llm.model)
                except ValueError as exc:
                    problem, provider = str(exc), ""
                if not problem and timeout_problem(provider, self.timeout_s):
                    _fail("timeout_s", str(timeout_problem(provider, self.timeout_s)))
                if problem:
                    _fail("llm", problem)
        used = self.command.parameters() if self.command is not None else set()
        if self.llm is not None:
            used |= self.llm.placeholders()
        unused = sorted(set(self.parameters) - used)
        if unused:
            _fail(
                "parameters",
                f"{', '.join(unused)} declared but never used; use them in the command (or"
                " prompt) or remove them",
            )
        return self

    # -- use ---------------------------------------------------------------------------------

    @property
    def source(self) -> Path | None:
        """The file the definition was loaded from (None when built in code)."""
        return self._source

    @property
    def breaker_name(self) -> str:
        """The name of the agent's circuit breaker: ``agent:<name>``."""
        return f"agent:{self.name}"

    def breaker_policy(self) -> BreakerPolicy | None:
        """The agent's breaker policy, or None for the environment's defaults."""
        return self.breaker

    def parameter_values(self, params: Mapping[str, ParamValue | None]) -> dict[str, str]:
        """``params`` as text with defaults filled in; None means not given.

        Raises:
            InvalidInputError: a parameter the agent does not declare, or a value that is not text,
                a number or a path.
        """
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            known = ", ".join(sorted(self.parameters)) or "none"
            raise InvalidInputError(
                f"agent {self.name!r} has no parameter {unknown[0]!r}; its parameters are {known}"
            )
        values = {n: p.default for n, p in self.parameters.items() if p.default is not None}
        for name, value in params.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, str | int | float | Path):
                raise InvalidInputError(
                    f"parameter {name!r} of agent {self.name!r} is {type(value).__name__}; give text,"
                    " a number or a path"
                )
            values[name] = str(value)
        missing = [n for n, p in self.parameters.items() if p.is_required and n not in values]
        if missing:
            raise InvalidInputError(
                f"agent {self.name!r} needs parameter {missing[0]!r}"
                f" ({self.parameters[missing[0]].description}); give it, e.g. {missing[0]}=..."
            )
        return values

    def render_args(self, params: Mapping[str, ParamValue | None]) -> list[str]:
        """The command's argument list for ``params`` (see :mod:`agents.template`).

        Examples:
            >>> spec = AgentSpec.model_validate({
            ...     "name": "n", "description": "d", "capabilities": ["c"], "image": "alpine",
            ...     "parameters": {"x": {"description": "x", "required": False}},
            ...     "command": ["echo", {"optional": ["-x", "{x}"]}]})
            >>> spec.render_args({}), spec.render_args({"x": 1})
            (['echo'], ['echo', '-x', '1'])
        """
        if self.command is None:
            raise InvalidInputError(f"agent {self.name!r} is an llm agent; it has no command")
        try:
            return self.command.render(self.parameter_values(params))
        except InvalidInputError as exc:
            if exc.message.startswith(f"agent {self.name!r}"):
                raise
            raise InvalidInputError(f"agent {self.name!r}: {exc.message}") from None

    def to_step_spec(
        self,
        params: Mapping[str, ParamValue | None] | None = None,
        *,
        name: str | None = None,
        mounts: Mapping[str, str | Mount] | None = None,
        outputs: Mapping[str, str] | None = None,
        caches: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> StepSpec:
        """The :class:`~adapters.StepSpec` that runs this agent once.

        The agent gives the image, the args (from its template), its env, caches, timeout and
        transient exit codes; the caller gives the step name (default: the agent name), mounts,
        outputs, extra env and caches, and the secret values (for the names the agent declares).

        Raises:
            InvalidInputError: bad parameters, env or caches set by both sides differently, or a
                secret value missing; InvalidSpecError when the result is not a valid StepSpec.
        """
        args = self.render_args(params or {})
        assert self.image is not None
        merged_env = _merge("env", self.env, env or {})
        merged_caches = _merge("caches", self.caches, caches or {})
        given = dict(secrets or {})
        missing = [s for s in self.secrets if s not in given]
        if missing:
            raise InvalidInputError(
                f"agent {self.name!r} needs secret {missing[0]} and none was given"
            )
        return StepSpec.parse(
            {
                "name": name or self.name,
                "image": self.image,
                "args": args,
                "env": merged_env,
                "secrets": {k: given[k] for k in self.secrets},
                "mounts": dict(mounts or {}),
                "outputs": dict(outputs or {}),
                "caches": merged_caches,
                "requirements": list(self.requirements),
                "timeout_s": self.timeout_s,
                "transient_exit_codes": self.retry.transient_exit_codes,
            },
            source=f"agent {self.name!r}",
        )


def _fail(field: str, message: str) -> NoReturn:
    """Raise a validation error located at ``field`` (a model-level check names its field)."""
    error = PydanticCustomError(DEFINITION_ERROR, "{message}", {"message": message})
    raise ValidationError.from_exception_data(
        "AgentSpec", [InitErrorDetails(type=error, loc=(field,), input=None)]
    )


def _check_declared(used: set[str], declared: Mapping[str, Parameter]) -> None:
    unknown = sorted(used - set(declared))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(declared), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"parameter {unknown[0]!r} is not declared{hint}; declare it under parameters:"
            f" ({unknown[0]}: {{description: ...}}) or fix the name"
        )


def _check_root_defaults(llm: LlmSection, declared: Mapping[str, Parameter]) -> None:
    """A default of a parameter that names an input's or output's folder is part of the
    definition: it follows the same rule as a path written in the definition."""
    paths = [
        (f"input {name!r}", item.value, item.outside_working_tree)
        for name, item in llm.inputs.items()
        if item.kind != "string"
    ] + [(f"output {name!r}", item.path, False) for name, item in llm.outputs.items()]
    for what, template, outside in paths:
        root, _ = split_root(template)
        default = declared[root].default if root is not None and root in declared else None
        if default is not None:
            check_path_template(
                default,
                what=f"{what.split()[0]} path default of parameter {root!r} (the root of {what})",
                outside_allowed=outside,
            )


def _merge(field: str, ours: Mapping[str, str], theirs: Mapping[str, str]) -> dict[str, str]:
    clash = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
    if clash:
        raise InvalidInputError(
            f"{field} {', '.join(clash)} set by both the agent and the caller with different"
            " values; set each in one place"
        )
    return {**ours, **theirs}
