"""The sections of an agent definition: parameters, retry, breaker, resources and llm.

Each is a frozen pydantic model that forbids unknown fields; ``retry:`` and ``breaker:`` carry the
fields of :class:`~adapters.retry_policy.RetryPolicy` and :class:`~adapters.breaker_policy.BreakerPolicy`
under the same names, and build those policies.

Examples:
    >>> RetrySection(attempts=2, transient_exit_codes=[75]).policy().attempts
    2
    >>> ResourceHints(memory="512MiB").memory_bytes
    536870912
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.breaker_policy import BreakerPolicy
from adapters.retry_policy import RetryPolicy
from agents.template import placeholders

__all__ = [
    "BreakerSection",
    "LlmBudgetSection",
    "LlmInputSection",
    "LlmOutputSection",
    "LlmSection",
    "Parameter",
    "ResourceHints",
    "RetrySection",
]

_BINDING_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$")
_MEMORY_UNITS = {
    "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}  # fmt: skip


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Parameter(_Section):
    """One named parameter of an agent (what fills ``{name}`` in its command or prompt)."""

    description: str = Field(min_length=1, description="What the value is, in a few words.")
    required: bool | None = Field(
        default=None, description="Must be given (default: true unless a default is set)."
    )
    default: str | None = Field(default=None, description="Value used when none is given.")

    @model_validator(mode="after")
    def _required_or_default(self) -> Parameter:
        if self.required and self.default is not None:
            raise ValueError(
                "a parameter cannot be both required and have a default; drop 'required: true'"
                " or the default"
            )
        return self

    @property
    def is_required(self) -> bool:
        """True when a run must give this parameter."""
        return self.default is None if self.required is None else self.required


class RetrySection(_Section):
    """``retry:`` -- the fields of :class:`~adapters.retry_policy.RetryPolicy`, plus the exit codes
    that mean "try again" for this agent."""

    attempts: Annotated[int, Field(ge=1)] = RetryPolicy.attempts
    backoff_s: Annotated[float, Field(ge=0)] = RetryPolicy.backoff_s
    factor: Annotated[float, Field(ge=1)] = RetryPolicy.factor
    max_backoff_s: Annotated[float, Field(ge=0)] = RetryPolicy.max_backoff_s
    jitter: Annotated[float, Field(ge=0)] = RetryPolicy.jitter
    budget_s: Annotated[float, Field(gt=0)] | None = RetryPolicy.budget_s
    transient_exit_codes: frozenset[Annotated[int, Field(ge=1, le=255)]] = frozenset()

    def policy(self) -> RetryPolicy:
        """The retry policy this section declares. A run applies the operator's retry settings
        over it (:meth:`adapters.settings.Settings.retry_policy`: the operator wins over an agent
        file's defaults)."""
        return RetryPolicy(**self.model_dump(exclude={"transient_exit_codes"}))


class BreakerSection(_Section):
    """``breaker:`` -- the fields of :class:`~adapters.breaker_policy.BreakerPolicy`."""

    fail_max: Annotated[int, Field(ge=1)] = BreakerPolicy.fail_max
    reset_timeout: Annotated[float, Field(gt=0)] = BreakerPolicy.reset_timeout
    success_threshold: Annotated[int, Field(ge=1)] = BreakerPolicy.success_threshold
    half_open_max_calls: Annotated[int, Field(ge=1)] = BreakerPolicy.half_open_max_calls

    def policy(self) -> BreakerPolicy:
        """The breaker policy of the agent's breaker (``agent:<name>``)."""
        return BreakerPolicy(**self.model_dump())


class ResourceHints(_Section):
    """``resources:`` -- what the agent needs; hints for schedulers and people, not enforced."""

    cpu: Annotated[float, Field(gt=0)] | None = Field(default=None, description="CPU cores.")
    memory: str | None = Field(default=None, description="Memory, e.g. '512MiB' or '2GB'.")
    gpu: Annotated[int, Field(ge=0)] = Field(default=0, description="GPUs.")

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY_RE.match(value.strip()):
            raise ValueError(
                f"{value!r} is not an amount of memory; write a number and a unit, e.g. 512MiB or 2GB"
            )
        return value

    @property
    def memory_bytes(self) -> int | None:
        """``memory`` in bytes (None when not given)."""
        if self.memory is None:
            return None
        match = _MEMORY_RE.match(self.memory.strip())
        assert match is not None
        return int(float(match[1]) * _MEMORY_UNITS[match[2] or "B"])


class LlmInputSection(_Section):
    """One entry of ``llm.inputs``: a folder, a file or a text given to the model's environment."""

    kind: Literal["directory", "file", "string"] = Field(
        description="directory or file (a host path, uploaded as a snapshot), or string (text)."
    )
    value: str = Field(
        min_length=1, description="Host path or text, with {parameter} placeholders."
    )
    description: str = Field(min_length=1, description="What it is, as the model reads it.")

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        placeholders(value)
        return value


class LlmOutputSection(_Section):
    """One entry of ``llm.outputs``: a folder or file the model must produce, and where it goes."""

    kind: Literal["directory", "file"] = Field(description="directory or file.")
    path: str = Field(min_length=1, description="Host path, with {parameter} placeholders.")
    description: str = Field(min_length=1, description="What to put there, as the model reads it.")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        placeholders(value)
        return value


class LlmBudgetSection(_Section):
    """``llm.budget:`` -- what one run may spend; the step stops with an error past either limit."""

    max_api_calls: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=10, description="Model API calls (steps of the loop) per run."
    )
    max_tokens: Annotated[int, Field(ge=1)] = Field(
        default=100_000, description="Tokens (input + output, as the provider counts) per run."
    )


class LlmSection(_Section):
    """``llm:`` -- what an ``llm`` agent asks (run through Dagger's ``dag.llm()``)."""

    prompt: str = Field(min_length=1, description="The task, with {parameter} placeholders.")
    model: str | None = Field(
        default=None, description="Model name; the engine's default if unset."
    )
    key: str | None = Field(
        default=None,
        description="The provider key's name (one of the agent's secrets); default: the one"
        " provider key among them.",
    )
    inputs: dict[str, LlmInputSection] = Field(
        default_factory=dict, description="Input name -> what the model is given."
    )
    outputs: dict[str, LlmOutputSection] = Field(
        default_factory=dict, description="Output name -> what the model must produce."
    )
    budget: LlmBudgetSection = Field(default_factory=LlmBudgetSection)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        placeholders(value)
        return value

    @field_validator("inputs", "outputs")
    @classmethod
    def _binding_names(cls, value: dict[str, object]) -> dict[str, object]:
        for name in value:
            if not _BINDING_RE.match(name):
                raise ValueError(
                    f"{name!r} is not a usable input or output name; use lower-case letters,"
                    " digits and '_', starting with a letter (e.g. report)"
                )
        return value

    @model_validator(mode="after")
    def _distinct(self) -> LlmSection:
        both = sorted(set(self.inputs) & set(self.outputs))
        if both:
            raise ValueError(f"{both[0]!r} is both an input and an output; rename one of them")
        return self

    def placeholders(self) -> set[str]:
        """Every parameter the prompt, the inputs and the outputs refer to."""
        used = set(placeholders(self.prompt))
        for item in self.inputs.values():
            used |= set(placeholders(item.value))
        for out in self.outputs.values():
            used |= set(placeholders(out.path))
        return used
