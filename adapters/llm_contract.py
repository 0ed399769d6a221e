"""The llm step contract: one plain-data spec in, one plain-data result out (no ``dagger``).

An llm step asks a model, through Dagger's LLM API, to do a task with named inputs (host folders
and files, or text) and to produce named outputs (folders and files written back to host paths).
:class:`LlmSpec` is what :mod:`adapters.dagger.llm` runs; :class:`LlmResult` is what it returns.
Neither holds the provider key's value: the engine reads the key itself (ADR 0021), so the spec
only names it (``key_name``), and it must be the key the engine gives the model's provider
(:mod:`adapters.llm_route`): a spec whose model goes to another provider is refused.

Examples:
    >>> spec = LlmSpec(
    ...     name="summarize", model="claude-sonnet-4-5", prompt="Summarize the report.",
    ...     key_name="ANTHROPIC_API_KEY",
    ...     inputs={"report": LlmInput(kind="directory", value="/tmp", description="the report")},
    ...     budget=LlmBudget(max_api_calls=4, max_tokens=20_000),
    ... )
    >>> spec.provider
    'anthropic'
    >>> TokenUsage(input_tokens=10, output_tokens=5, total_tokens=15).exceeds(10)
    True
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.llm_route import provider_of_model, route_problem, timeout_problem

__all__ = [
    "PROVIDERS",
    "LlmBudget",
    "LlmInput",
    "LlmOutput",
    "LlmResult",
    "LlmSpec",
    "TokenUsage",
]

#: Provider key name -> the provider whose models the engine gives it (dagger/dagger core/llm.go,
#: ``LLMRouter.LoadConfig`` reads exactly these variable names; models of no known provider go to
#: an OpenAI-compatible endpoint with the OpenAI key).
PROVIDERS: dict[str, str] = {
    "ANTHROPIC_API_KEY": "anthropic",
    "OPENAI_API_KEY": "openai",
    "GEMINI_API_KEY": "google",
}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_BINDING_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LlmInput(_Frozen):
    """One named input of the model's environment.

    ``directory`` and ``file`` are host paths (uploaded as a snapshot); ``string`` is text.
    """

    kind: Literal["directory", "file", "string"]
    value: str = Field(description="Host path (directory, file) or the text itself (string).")
    description: str = Field(min_length=1, description="What it is, as the model reads it.")


class LlmOutput(_Frozen):
    """One named output the model must produce, written to ``path`` on the host."""

    kind: Literal["directory", "file"]
    path: str = Field(min_length=1, description="Host path the output is written to.")
    description: str = Field(min_length=1, description="What to put there, as the model reads it.")


class LlmBudget(_Frozen):
    """What one run of the agent may spend: model API calls and tokens (input + output)."""

    max_api_calls: Annotated[int, Field(ge=1, le=1000)] = 10
    max_tokens: Annotated[int, Field(ge=1)] = 100_000


class TokenUsage(_Frozen):
    """Token usage as the engine reports it (``LLMTokenUsage``: the sum over the conversation)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_token_reads: int = 0
    cached_token_writes: int = 0
    total_tokens: int = 0

    def exceeds(self, max_tokens: int) -> bool:
        """True when the conversation used more than ``max_tokens`` tokens in all."""
        return self.spent > max_tokens

    @property
    def spent(self) -> int:
        """Tokens counted against the budget: the provider's total, else input + output."""
        return self.total_tokens or self.input_tokens + self.output_tokens


class LlmSpec(_Frozen):
    """One llm step: the model, the rendered prompt, the environment's bindings and the budget."""

    name: str = Field(description="Step name: lower-case letters, digits, '.', '_', '-'.")
    model: str | None = Field(default=None, description="Model name; None: the engine's default.")
    prompt: str = Field(min_length=1, description="The task, parameters already filled in.")
    key_name: str = Field(description="The provider key's variable name, e.g. ANTHROPIC_API_KEY.")
    inputs: dict[str, LlmInput] = Field(default_factory=dict)
    outputs: dict[str, LlmOutput] = Field(default_factory=dict)
    budget: LlmBudget = Field(default_factory=LlmBudget)
    timeout_s: Annotated[float, Field(gt=0)] = 600.0
    trace_content: bool = Field(
        default=False,
        description="The prompt and reply may go on the trace, and the engine may record the"
        " model's loop (the agent's ``llm.trace_content``); not part of the cache key.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a step name; use lower-case letters and digits")
        return value

    @field_validator("key_name")
    @classmethod
    def _key_name(cls, value: str) -> str:
        if value not in PROVIDERS:
            raise ValueError(
                f"{value!r} is not a provider key the engine reads; use one of"
                f" {', '.join(PROVIDERS)}"
            )
        return value

    @model_validator(mode="after")
    def _route(self) -> LlmSpec:
        if self.model is not None:
            problem = route_problem(self.model, self.key_name) or timeout_problem(
                provider_of_model(self.model), self.timeout_s
            )
            if problem:
                raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _bindings(self) -> LlmSpec:
        for name in (*self.inputs, *self.outputs):
            if not _BINDING_RE.match(name):
                raise ValueError(
                    f"{name!r} is not a usable input or output name; use lower-case letters,"
                    " digits and '_', starting with a letter (e.g. report)"
                )
        both = sorted(set(self.inputs) & set(self.outputs))
        if both:
            raise ValueError(f"{both[0]!r} is both an input and an output; rename one")
        return self

    @property
    def provider(self) -> str:
        """The provider the engine sends the model to (``anthropic``, ``openai``, ``google``,
        ``other``); with no model, the provider of the named key (the engine's default model
        may differ: :meth:`adapters.llm_route.EngineConfig.route` says which it is)."""
        return provider_of_model(self.model) if self.model else PROVIDERS[self.key_name]


class LlmResult(_Frozen):
    """What an llm step did: the model's last reply, the outputs written, what it cost."""

    step: str
    model: str = Field(description="The model the engine used.")
    reply: str = Field(description="Tail of the model's last reply, secret values masked.")
    outputs: dict[str, str] = Field(
        default_factory=dict, description="Output name -> host path written."
    )
    usage: TokenUsage = Field(default_factory=TokenUsage)
    api_calls: int = Field(description="Model API calls made (steps of the loop).")
    duration_s: float
    attempt: int = 1
