"""The LLM side of the stand-in engine: ``Query.llm``, ``Query.env``, ``LLM``, ``Env``, ``Binding``.

The model is scripted (:class:`ScriptedModel`): each API call takes the next :class:`Reply` (text,
tool calls, token usage) or :class:`ProviderFailure` from a list. What the adapter depends on
follows the engine (github.com/dagger/dagger v0.21.8):

* **the loop** (``core/llm.go``: ``LLM.Step``, ``loop``): ``step`` makes one API call; when the reply
  asks for tools they run and their results are queued, so ``hasPrompt`` (the last message is the
  user's) stays true; a reply without tool calls ends the turn. ``maxAPICalls`` stops the loop with
  ``reached API call limit: N``. ``tokenUsage`` is the sum over the conversation's messages.
* **the key** (``core/llm.go``: ``NewLLMRouter``, ``loadLLMRouter``, ``LLMRouter.LoadConfig`` and
  ``Route``): read when a model is first routed, from the session client's environment
  (:attr:`ScriptedModel.client_env`; by default this process's environment, as a ``dagger session``
  CLI started from it inherits it), by the provider's variable name; the model name picks the
  provider (``claude*`` Anthropic, ``gpt*``/``o1``/``o3`` OpenAI, ``gemini*`` Google). No model
  and no key: ``no valid LLM endpoint configuration``.
* **provider errors** (``core/llm.go``: ``sendQueryWithRetry``; ``core/llm_anthropic.go``:
  ``IsRetryable``): after its own retries the engine reports ``not retrying: <the provider SDK's
  error>``, which for Anthropic reads ``POST "https://api.anthropic.com/v1/messages": 429 Too Many
  Requests {"type":"error","error":{"type":"rate_limit_error",...}}``. The stand-in answers at
  once with the final message: it does not wait out the engine's two-minute backoff.
* **env outputs** (``core/env.go``): a declared output is null until a tool binds it; ``output``
  of an undeclared name is an error.

Tool calls are Python functions of an :class:`EnvView` (the inputs' host paths and values, and a
``save`` that binds an output), so a scripted model can read its inputs and write real outputs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, GraphQLResolveInfo

from tests.fakes.dagger_engine import _Directory, _File, _Object

if TYPE_CHECKING:
    from tests.fakes.dagger_engine import FakeDaggerEngine

__all__ = [
    "EnvView",
    "ModelCall",
    "ProviderFailure",
    "Reply",
    "ScriptedModel",
    "ToolCall",
    "save_file",
]

_PROVIDER_KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY",
                  "google": "GEMINI_API_KEY"}  # fmt: skip
_URLS = {
    "anthropic": "https://api.anthropic.com/v1/messages",
    "openai": "https://api.openai.com/v1/chat/completions",
    "google": "https://generativelanguage.googleapis.com/v1beta/models",
}


def provider_of(model: str) -> str:
    """The provider the engine routes ``model`` to (core/llm.go, ``LLMRouter.Route``)."""
    if model.startswith("claude"):
        return "anthropic"
    if model.startswith("gemini"):
        return "google"
    return "openai"


@dataclass
class EnvView:
    """What a tool call sees: the inputs (host path or text) and the outputs it may bind."""

    inputs: dict[str, str]
    outputs: dict[str, str]
    bound: dict[str, _Object]
    engine: FakeDaggerEngine

    def save(self, output: str, content: str) -> str:
        """Bind the file output ``output`` to a file holding ``content``."""
        if output not in self.outputs:
            raise GraphQLError(f"output {output!r} not found")
        self.bound[output] = _File(self.engine, data=content)
        return f"saved {output}"

    def save_directory(self, output: str, files: Mapping[str, str]) -> str:
        """Bind the directory output ``output`` to a folder of ``files``."""
        if output not in self.outputs:
            raise GraphQLError(f"output {output!r} not found")
        self.bound[output] = _Directory(self.engine, files=dict(files))
        return f"saved {output}"


@dataclass(frozen=True)
class ToolCall:
    """One tool the model asks for; ``run`` returns the tool's result text."""

    name: str
    run: Callable[[EnvView], str]


def save_file(output: str, content: str | Callable[[EnvView], str]) -> ToolCall:
    """A tool call that writes ``content`` (or what it computes from the env) to ``output``."""

    def run(view: EnvView) -> str:
        return view.save(output, content(view) if callable(content) else content)

    return ToolCall(f"save_{output}", run)


@dataclass(frozen=True)
class Reply:
    """One API call's answer: text, tool calls and the provider's token counts."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    input_tokens: int = 100
    output_tokens: int = 20
    cached_token_reads: int = 0
    cached_token_writes: int = 0


@dataclass(frozen=True)
class ProviderFailure:
    """One API call the provider refuses: HTTP status and error type, in the provider's words."""

    status: int
    error_type: str
    message: str = ""

    def text(self, provider: str) -> str:
        reason = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                  429: "Too Many Requests", 500: "Internal Server Error",
                  529: "status code 529"}.get(self.status, "Error")  # fmt: skip
        body = (
            '{"type":"error","error":{"type":"' + self.error_type + '","message":"'
            + self.message + '"}}'
        )  # fmt: skip
        return f'not retrying: POST "{_URLS[provider]}": {self.status} {reason} {body}'


@dataclass(frozen=True)
class ModelCall:
    """One API call the stand-in's provider received."""

    model: str
    key: str
    messages: tuple[str, ...]


@dataclass
class ScriptedModel:
    """The provider side: scripted answers, accepted keys, known models, received calls."""

    script: list[Reply | ProviderFailure] = field(default_factory=list)
    valid_keys: set[str] = field(default_factory=set)
    known_models: set[str] = field(
        default_factory=lambda: {"claude-sonnet-4-5", "gpt-4.1", "gemini-2.5-flash"}
    )
    client_env: Mapping[str, str] | None = None
    calls: list[ModelCall] = field(default_factory=list)

    def key_for(self, provider: str) -> str:
        env = os.environ if self.client_env is None else self.client_env
        return env.get(_PROVIDER_KEYS[provider], "")

    def answer(self, model: str, messages: tuple[str, ...]) -> Reply:
        provider = provider_of(model)
        key = self.key_for(provider)
        self.calls.append(ModelCall(model, key, messages))
        if not key or key not in self.valid_keys:
            # A refused key is quoted back, as OpenAI's "Incorrect API key provided: ..." does.
            what = "x-api-key header is required" if not key else f"invalid x-api-key {key}"
            raise GraphQLError(ProviderFailure(401, "authentication_error", what).text(provider))
        if model not in self.known_models:
            raise GraphQLError(
                ProviderFailure(404, "not_found_error", f"model: {model}").text(provider)
            )
        if not self.script:
            raise GraphQLError("stand-in: the scripted model has no reply left")
        answer = self.script.pop(0)
        if isinstance(answer, ProviderFailure):
            raise GraphQLError(answer.text(provider))
        return answer


# ---------------------------------------------------------------------------------------------
# GraphQL objects
# ---------------------------------------------------------------------------------------------


class FakeEnv(_Object):
    typename = "Env"

    def __init__(
        self,
        engine: FakeDaggerEngine,
        inputs: Mapping[str, tuple[str, str]] | None = None,
        outputs: Mapping[str, tuple[str, str]] | None = None,
        bound: Mapping[str, _Object] | None = None,
    ) -> None:
        super().__init__(engine)
        self.inputs = dict(inputs or {})  # name -> (kind, host path or text)
        self.outputs = dict(outputs or {})  # name -> (kind, description)
        self.bound = dict(bound or {})

    def _with(self, **changes: Any) -> FakeEnv:
        data = {"inputs": self.inputs, "outputs": self.outputs, "bound": self.bound, **changes}
        return FakeEnv(self.engine, **data)

    def withDirectoryInput(
        self, info: GraphQLResolveInfo[Any], name: str, value: str, description: str
    ) -> FakeEnv:
        directory = self.engine._load(value, _Directory)
        return self._with(inputs={**self.inputs, name: ("directory", str(directory.host_path))})

    def withFileInput(
        self, info: GraphQLResolveInfo[Any], name: str, value: str, description: str
    ) -> FakeEnv:
        file = self.engine._load(value, _File)
        return self._with(inputs={**self.inputs, name: ("file", str(file.host_path))})

    def withStringInput(
        self, info: GraphQLResolveInfo[Any], name: str, value: str, description: str
    ) -> FakeEnv:
        return self._with(inputs={**self.inputs, name: ("string", value)})

    def withDirectoryOutput(
        self, info: GraphQLResolveInfo[Any], name: str, description: str
    ) -> FakeEnv:
        return self._with(outputs={**self.outputs, name: ("directory", description)})

    def withFileOutput(self, info: GraphQLResolveInfo[Any], name: str, description: str) -> FakeEnv:
        return self._with(outputs={**self.outputs, name: ("file", description)})

    def output(self, info: GraphQLResolveInfo[Any], name: str) -> FakeBinding:
        if name not in self.outputs:
            raise GraphQLError(f"output {name!r} not found")
        return FakeBinding(self.engine, self.bound.get(name))


class FakeBinding(_Object):
    typename = "Binding"

    def __init__(self, engine: FakeDaggerEngine, value: _Object | None) -> None:
        super().__init__(engine)
        self.value = value

    def isNull(self, info: GraphQLResolveInfo[Any]) -> bool:
        return self.value is None

    def asDirectory(self, info: GraphQLResolveInfo[Any]) -> _Object:
        if not isinstance(self.value, _Directory):
            raise GraphQLError("binding is not a Directory")
        return self.value

    def asFile(self, info: GraphQLResolveInfo[Any]) -> _Object:
        if not isinstance(self.value, _File):
            raise GraphQLError("binding is not a File")
        return self.value


@dataclass(frozen=True)
class _Message:
    role: str  # user | assistant
    content: str
    usage: Reply | None = None


class FakeTokenUsage(_Object):
    typename = "LLMTokenUsage"

    def __init__(self, engine: FakeDaggerEngine, messages: tuple[_Message, ...]) -> None:
        super().__init__(engine)
        used = [m.usage for m in messages if m.usage is not None]
        self.inputTokens = sum(u.input_tokens for u in used)
        self.outputTokens = sum(u.output_tokens for u in used)
        self.cachedTokenReads = sum(u.cached_token_reads for u in used)
        self.cachedTokenWrites = sum(u.cached_token_writes for u in used)
        self.totalTokens = self.inputTokens + self.outputTokens


@dataclass(frozen=True)
class _LlmState:
    model: str
    max_api_calls: int
    api_calls: int = 0
    env: FakeEnv | None = None
    messages: tuple[_Message, ...] = ()


class FakeLLM(_Object):
    typename = "LLM"

    def __init__(self, engine: FakeDaggerEngine, state: _LlmState) -> None:
        super().__init__(engine)
        self.state = state

    def _with(self, **changes: Any) -> FakeLLM:
        return FakeLLM(self.engine, dataclasses.replace(self.state, **changes))

    def withEnv(self, info: GraphQLResolveInfo[Any], env: str) -> FakeLLM:
        return self._with(env=self.engine._load(env, FakeEnv))

    def withPrompt(self, info: GraphQLResolveInfo[Any], prompt: str) -> FakeLLM:
        return self._with(messages=(*self.state.messages, _Message("user", prompt)))

    def withModel(self, info: GraphQLResolveInfo[Any], model: str) -> FakeLLM:
        return self._with(model=model)

    def hasPrompt(self, info: GraphQLResolveInfo[Any]) -> bool:
        return bool(self.state.messages) and self.state.messages[-1].role == "user"

    def step(self, info: GraphQLResolveInfo[Any]) -> str:
        state = self.state
        if not self.hasPrompt(info):
            return self.id
        if state.max_api_calls > 0 and state.api_calls >= state.max_api_calls:
            raise GraphQLError(f"reached API call limit: {state.api_calls}")
        model: ScriptedModel = self.engine.model
        if not state.model and not model.key_for("anthropic"):
            raise GraphQLError("no valid LLM endpoint configuration")
        name = state.model or "claude-sonnet-4-5"
        reply = model.answer(name, tuple(m.content for m in state.messages))
        messages = (*state.messages, _Message("assistant", reply.text, reply))
        env = state.env or FakeEnv(self.engine)
        if reply.tool_calls:
            view = EnvView(
                inputs={n: v for n, (_, v) in env.inputs.items()},
                outputs={n: k for n, (k, _) in env.outputs.items()},
                bound=dict(env.bound),
                engine=self.engine,
            )
            results = [_Message("user", call.run(view)) for call in reply.tool_calls]
            messages = (*messages, *results)
            env = env._with(bound=view.bound)
        stepped = FakeLLM(
            self.engine,
            dataclasses.replace(
                state, model=name, api_calls=state.api_calls + 1, env=env, messages=messages
            ),
        )
        return stepped.id

    def env(self, info: GraphQLResolveInfo[Any]) -> FakeEnv:
        return self.state.env or FakeEnv(self.engine)

    def lastReply(self, info: GraphQLResolveInfo[Any]) -> str:
        replies = [m.content for m in self.state.messages if m.role == "assistant"]
        return replies[-1] if replies else ""

    def model(self, info: GraphQLResolveInfo[Any]) -> str:
        return self.state.model or "claude-sonnet-4-5"

    def tokenUsage(self, info: GraphQLResolveInfo[Any]) -> FakeTokenUsage:
        return FakeTokenUsage(self.engine, self.state.messages)


def new_llm(engine: FakeDaggerEngine, model: str | None, max_api_calls: int | None) -> FakeLLM:
    """``Query.llm(model:, maxAPICalls:)``."""
    return FakeLLM(engine, _LlmState(model or "", max_api_calls or 0))


def new_env(engine: FakeDaggerEngine) -> FakeEnv:
    """``Query.env``."""
    return FakeEnv(engine)


def read_input(view: EnvView, name: str, rel: str = "") -> str:
    """The text of an input (a file, a file inside a directory input, or a string input)."""
    value = view.inputs[name]
    return Path(value, rel).read_text(encoding="utf-8") if rel or Path(value).is_file() else value
