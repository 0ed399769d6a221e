"""The LLM side of the stand-in engine: ``Query.llm``, ``Query.env``, ``LLM``, ``Env``, ``Binding``.

The provider is scripted (:class:`ScriptedModel`): each API request the engine sends takes the next
:class:`Reply` (text, tool calls, token usage) or :class:`ProviderFailure` from a list. What the
adapter depends on follows the engine (github.com/dagger/dagger, tag v0.21.8), each behaviour
citing its file:

* **an LLM is mutable and syncs once** (``core/llm.go``: ``LLM.Sync``, ``Clone``): ``env``,
  ``lastReply`` and ``tokenUsage`` call ``Sync`` on the LLM they are asked on
  (``core/schema/llm.go``: ``env``, ``lastReply``, ``tokenUsage``). ``Sync`` runs the loop once
  (``sync.Once``) and keeps its error (``llm.err``); on an LLM that was not stepped it runs the
  *whole* loop, until the model ends its turn, every output is saved or ``maxAPICalls`` is
  reached. ``hasPrompt``, ``model`` and ``provider`` do not sync. Every ``with*``, ``attempt``
  and ``__step`` is a ``Clone``: a copy of the history and of the call counter with a fresh
  ``once`` and no error; the routed endpoint is copied, so a clone of a routed LLM does not
  route again.
* **step** (``core/schema/llm.go``: ``step`` selects ``__step`` then ``sync``; ``core/llm.go``:
  ``Step``, ``loop``): one model request plus the tools it asked for; a reply without tool calls
  ends the turn. Stepping an LLM whose last message is the model's calls the model again (the
  loop only looks for *a* user message). ``maxAPICalls`` fails the loop with ``reached API call
  limit: N`` (the counter is copied by ``Clone``, so it counts across steps).
* **memoization** (``dagql/cache.go``, ``dagql/cache_inputs.go``): every field is a cached
  call; ``llm`` is cached per session (``PerSessionInput``), ``env`` per client
  (``PerClientInput``), and ``with*``/``attempt``/``__step`` by their parent and arguments, so
  the same chain asked again in the session is the *same* LLM, with its stored result or error,
  and no provider request. Errors of a call are not cached, but ``__step``'s result (the LLM
  that failed) is. ``attempt(number:)`` is a ``Clone`` under another cache key: a new branch.
* **outputs** (``core/env.go``, ``core/mcp.go``: ``saveTool``, ``MCP.Clone``): a declared output
  is a binding of an expected type (``File``, ``Directory``), null until the ``Save`` tool binds
  an object of that type to it; ``Save`` errors (unknown output, object not found, incompatible
  types) are tool results the model reads, not query errors. The bindings are mutated in place
  on the ``Env`` every clone of the chain shares, and once every output is saved the loop ends
  (``MCP.returned``) with the tool results still queued (``hasPrompt`` stays true). Objects a
  tool creates get a model-facing ID (``File#1``; ``MCP.Ingest``). ``Env.output`` of an
  undeclared name: ``output not found: NAME`` (``core/schema/env.go``).
* **routing and keys** (``core/llm.go``: ``LLMRouter``, ``Route``, ``DefaultModel``,
  ``resolveModelAlias``, ``NewLLMRouter``, ``LoadConfig``; ``engine/client/secretprovider``):
  the provider follows the model name's prefix (``claude-``/``anthropic/``,
  ``gpt-``/``openai/``, ``gemini-``/``google/``, ``mistral-`` refused; anything else is "other",
  OpenAI-compatible, on the OpenAI key and base URL); aliases (``claude``, ``gpt``, ``gemini``
  ...) name the provider's default model; with no model the default comes from
  ``OPENAI_MODEL``, ``ANTHROPIC_MODEL``, ``GEMINI_MODEL``, then the OpenAI key, the Anthropic
  key, ``OPENAI_BASE_URL`` (llama-3.2), the Gemini key; nothing: ``no valid LLM endpoint
  configuration``. Every new LLM that routes reads the session client's ``.env`` (in its
  working directory, :attr:`ScriptedModel.client_cwd`) first and then its environment
  (:attr:`ScriptedModel.client_env`), and resolves a value that is a secret reference
  (``env://``, ``file://`` and ``cmd://`` here; the other schemes need services the stand-in does
  not have and fail).
* **provider errors and the engine's retries** (``core/llm.go``: ``loop``'s
  ``backoff.Retry``; ``core/llm_anthropic.go``, ``core/llm_google.go``, ``core/llm_openai.go``:
  ``IsRetryable``): a request the provider client calls retryable is sent again with
  exponential backoff (1 s, x1.5, at most 30 s apart, while the waits stay within 2 minutes):
  Anthropic's rate limit, overload and internal server error, Google's 429 and 503; OpenAI and
  other providers are never retried by the engine. Then the loop fails with ``not retrying:
  <the provider client's error>``. The waits go through :attr:`ScriptedModel.clock`, a virtual
  clock by default (tests never sleep); cenkalti/backoff's randomisation (+-50 %) is left out.

Tool calls are Python functions of an :class:`EnvView` (the inputs, objects the model creates,
and ``save``), so a scripted model can read its inputs and produce real outputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dotenv import dotenv_values
from graphql import GraphQLError, GraphQLResolveInfo

from tests.fakes.dagger_engine import _Directory, _File, _Object

if TYPE_CHECKING:
    from tests.fakes.dagger_engine import FakeDaggerEngine

__all__ = [
    "RETRY_ELAPSED_S",
    "EnvView",
    "ModelCall",
    "ProviderFailure",
    "Reply",
    "ScriptedModel",
    "ToolCall",
    "ToolError",
    "VirtualClock",
    "read_input",
    "requests_until_the_engine_gives_up",
    "save_directory",
    "save_file",
]

# -- the router (core/llm.go) --------------------------------------------------------------------

#: Default model per alias and provider (core/llm.go: modelDefault*, resolveModelAlias).
_DEFAULT_MODELS = {
    "anthropic": "claude-sonnet-4-5",
    "google": "gemini-2.5-flash",
    "openai": "gpt-4.1",
    "meta": "llama-3.2",
    "mistral": "mistral-7b-instruct",
}
_ALIASES = {"anthropic": "anthropic", "claude": "anthropic", "google": "google",
            "gemini": "google", "openai": "openai", "gpt": "openai", "meta": "meta",
            "llama": "meta", "mistral": "mistral"}  # fmt: skip
#: The variables LLMRouter.LoadConfig reads.
_CONFIG_KEYS = (
    "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL", "OPENAI_API_KEY",
    "OPENAI_AZURE_VERSION", "OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_DISABLE_STREAMING",
    "GEMINI_API_KEY", "GEMINI_BASE_URL", "GEMINI_MODEL",
)  # fmt: skip
#: Which configured key each provider's endpoint uses (route*Model).
_PROVIDER_KEY = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY",
                 "google": "GEMINI_API_KEY", "other": "OPENAI_API_KEY"}  # fmt: skip
#: Secret reference schemes (engine/client/secretprovider/secretprovider.go: resolvers).
_SCHEMES = ("env", "file", "cmd", "op", "vault", "libsecret", "gcp", "aws+sm", "aws+ps")
_URLS = {
    "anthropic": "https://api.anthropic.com/v1/messages",
    "openai": "https://api.openai.com/v1/chat/completions",
    "other": "https://api.openai.com/v1/chat/completions",
    "google": "https://generativelanguage.googleapis.com/v1beta/models",
}


def provider_of(model: str) -> str:
    """The provider the engine routes ``model`` to (core/llm.go: ``LLMRouter.Route``)."""
    if model.startswith(("claude-", "anthropic/")):
        return "anthropic"
    if model.startswith(("gpt-", "openai/")):
        return "openai"
    if model.startswith(("gemini-", "google/")):
        return "google"
    if model.startswith(("mistral-", "mistral/")):
        raise GraphQLError("mistral models are not yet supported")
    return "other"


def resolve_reference(value: str, env: Mapping[str, str], cwd: Path) -> str:
    """A value as the engine's ``loadSecret`` reads it: a secret reference is resolved, anything
    else is the plaintext (core/llm.go ``NewLLMRouter``; engine/client/secretprovider: ``env.go``,
    ``file.go``, ``cmd.go``; a scheme it does not know leaves the value as it is)."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in _SCHEMES:
        return value
    if scheme == "env":
        if rest not in env:
            shown = rest[:3] + "..." if len(rest) >= 4 else rest
            raise GraphQLError(f'secret env var not found: "{shown}"')
        return env[rest]
    if scheme == "file":
        path = Path(rest).expanduser()
        try:
            return (path if path.is_absolute() else cwd / path).read_text(encoding="utf-8")
        except OSError as exc:
            raise GraphQLError(f'failed to read secret file "{rest}": {exc}') from exc
    if scheme == "cmd":
        done = subprocess.run(
            ["sh", "-c", rest], cwd=cwd, env=dict(env), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise GraphQLError(f'failed to run secret command "{rest}": exit {done.returncode}')
        return done.stdout
    raise GraphQLError(f"stand-in: the {scheme}:// secret provider is not modelled")


@dataclass(frozen=True)
class _Endpoint:
    model: str
    provider: str
    key: str


# -- time ----------------------------------------------------------------------------------------

#: The engine's backoff for a retryable provider error (core/llm.go, ``loop``:
#: ``backoff.NewExponentialBackOff`` with InitialInterval 1 s, MaxInterval 30 s, MaxElapsedTime
#: 2 min; cenkalti/backoff/v4's default Multiplier 1.5; it stops when the elapsed time plus the
#: next wait would pass the maximum).
RETRY_INITIAL_S, RETRY_MAX_S, RETRY_ELAPSED_S, RETRY_MULTIPLIER = 1.0, 30.0, 120.0, 1.5


def requests_until_the_engine_gives_up(retried: bool) -> int:
    """How many requests the engine sends for a failure the provider keeps returning: one, or
    (for a failure its client retries) one per wait of the backoff plus the first."""
    if not retried:
        return 1
    waited, wait, requests = 0.0, RETRY_INITIAL_S, 1
    while waited + wait <= RETRY_ELAPSED_S:
        waited, wait, requests = (
            waited + wait,
            min(wait * RETRY_MULTIPLIER, RETRY_MAX_S),
            requests + 1,
        )
    return requests


@dataclass
class VirtualClock:
    """The engine's clock for its waits: ``sleep`` advances ``now`` and never really waits."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# -- the provider ----------------------------------------------------------------------------------


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
    """The provider refuses requests: HTTP status and error type, in its client's words.

    Attributes:
        for_s: how long (engine clock) the provider keeps refusing from its first refusal; None:
            longer than the engine retries. After that the next script entry answers.
    """

    status: int
    error_type: str
    message: str = ""
    for_s: float | None = None

    def text(self, provider: str) -> str:
        if provider == "google":  # google.golang.org/genai: APIError.Error()
            return f"Error {self.status}, Message: {self.message}, Status: {self.error_type}"
        reason = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                  429: "Too Many Requests", 500: "Internal Server Error",
                  503: "Service Unavailable", 529: "status code 529"}.get(self.status, "Error")  # fmt: skip
        body = (
            '{"type":"error","error":{"type":"' + self.error_type + '","message":"'
            + self.message + '"}}'
        )  # fmt: skip
        return f'POST "{_URLS[provider]}": {self.status} {reason} {body}'

    def retryable(self, provider: str) -> bool:
        """Whether the engine's client for ``provider`` retries it (``IsRetryable``)."""
        if provider == "anthropic":  # core/llm_anthropic.go: anthropicRetryable
            text = self.text(provider)
            return any(s in text for s in ("rate_limit_error", "overloaded_error",
                                           "Internal server error"))  # fmt: skip
        if provider == "google":  # core/llm_google.go: 503 and 429
            return self.status in (429, 503)
        return False  # core/llm_openai.go: "OpenAI client implements retrying internally"


@dataclass(frozen=True)
class ModelCall:
    """One request the provider received (``refused``: its error, when it refused it)."""

    model: str
    provider: str
    key: str
    messages: tuple[str, ...]
    at: float = 0.0
    refused: str | None = None


@dataclass
class ScriptedModel:
    """The provider side, and where the session's client keeps its LLM configuration.

    Attributes:
        script: the answers, in order.
        valid_keys: keys the provider accepts.
        known_models: models the provider serves.
        client_env: the session client's environment (None: this process's, as a ``dagger
            session`` started from it inherits it).
        client_cwd: the session client's working directory, where the engine reads ``.env``
            (None: this process's).
        clock: the engine's clock for its retry waits (virtual by default).
        calls: every request the provider received, refused ones included.
    """

    script: list[Reply | ProviderFailure] = field(default_factory=list)
    valid_keys: set[str] = field(default_factory=set)
    known_models: set[str] = field(
        default_factory=lambda: {"claude-sonnet-4-5", "gpt-4.1", "gemini-2.5-flash", "llama-3.2"}
    )
    client_env: Mapping[str, str] | None = None
    client_cwd: Path | None = None
    clock: VirtualClock = field(default_factory=VirtualClock)
    calls: list[ModelCall] = field(default_factory=list)
    _refusing_since: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def answered(self) -> list[ModelCall]:
        """The requests the provider answered (billed ones)."""
        return [c for c in self.calls if c.refused is None]

    def router_config(self) -> dict[str, str]:
        """What the router reads for a new LLM: ``.env`` first, then the client's environment,
        each value resolved when it is a secret reference (core/llm.go ``NewLLMRouter``)."""
        env = os.environ if self.client_env is None else self.client_env
        cwd = self.client_cwd or Path.cwd()
        dotenv_file = cwd / ".env"
        from_file = dict(dotenv_values(dotenv_file)) if dotenv_file.is_file() else {}
        config: dict[str, str] = {}
        for key in _CONFIG_KEYS:
            if key in from_file:
                value = resolve_reference(from_file[key] or "", env, cwd)
            elif key in env:
                value = resolve_reference(env[key], env, cwd)
            else:
                value = ""
            if value:
                config[key] = value
        return config

    def route(self, model: str) -> _Endpoint:
        """``LLMRouter.Route``: the endpoint (model, provider, key) for ``model``."""
        config = self.router_config()
        if not model:
            model = next(
                (config[k] for k in ("OPENAI_MODEL", "ANTHROPIC_MODEL", "GEMINI_MODEL")
                 if config.get(k)), "")  # fmt: skip
            if not model:
                if config.get("OPENAI_API_KEY"):
                    model = _DEFAULT_MODELS["openai"]
                elif config.get("ANTHROPIC_API_KEY"):
                    model = _DEFAULT_MODELS["anthropic"]
                elif config.get("OPENAI_BASE_URL"):
                    model = _DEFAULT_MODELS["meta"]
                elif config.get("GEMINI_API_KEY"):
                    model = _DEFAULT_MODELS["google"]
        else:
            model = _DEFAULT_MODELS[_ALIASES[model]] if model in _ALIASES else model
        provider = provider_of(model)
        if not model:
            raise GraphQLError("no valid LLM endpoint configuration")
        return _Endpoint(model, provider, config.get(_PROVIDER_KEY[provider], ""))

    def request(self, endpoint: _Endpoint, messages: tuple[str, ...]) -> Reply:
        """One request: the reply, or the provider client's error (``ProviderFailure``)."""
        provider, key = endpoint.provider, endpoint.key
        with self._lock:
            now = self.clock.monotonic()
            refused: ProviderFailure | None = None
            if not key or key not in self.valid_keys:
                # A refused key is quoted back, as OpenAI's "Incorrect API key provided: ..." does.
                what = "x-api-key header is required" if not key else f"invalid x-api-key {key}"
                refused = ProviderFailure(401, "authentication_error", what)
            elif endpoint.model not in self.known_models:
                refused = ProviderFailure(404, "not_found_error", f"model: {endpoint.model}")
            elif not self.script:
                raise GraphQLError("stand-in: the scripted model has no reply left")
            else:
                head = self.script[0]
                if isinstance(head, ProviderFailure):
                    since = self._refusing_since if self._refusing_since is not None else now
                    if head.for_s is None or now - since < head.for_s:
                        self._refusing_since = since
                        refused = head
                    else:  # the outage is over: the next entry answers
                        self.script.pop(0)
                        self._refusing_since = None
            self.calls.append(
                ModelCall(
                    endpoint.model,
                    provider,
                    key,
                    messages,
                    now,
                    refused.text(provider) if refused else None,
                )
            )
            if refused is None:
                if not self.script or isinstance(self.script[0], ProviderFailure):
                    raise GraphQLError("stand-in: the scripted model has no reply left")
                answer = self.script.pop(0)
                assert isinstance(answer, Reply)
                return answer
        raise _Refused(refused, refused.text(provider))

    def gave_up(self, failure: ProviderFailure) -> None:
        """The engine stopped retrying ``failure``: the script moves past it."""
        with self._lock:
            if self.script and self.script[0] is failure:
                self.script.pop(0)
            self._refusing_since = None


class _Refused(Exception):
    def __init__(self, failure: ProviderFailure, text: str) -> None:
        super().__init__(text)
        self.failure = failure


# -- tools (core/mcp.go) ------------------------------------------------------------------------


class ToolError(Exception):
    """A tool call failed: its message goes back to the model as the tool's result."""


@dataclass
class EnvView:
    """What a tool call sees: the inputs, the objects the model holds, and ``save``."""

    llm: FakeLLM

    @property
    def inputs(self) -> dict[str, str]:
        """Input name -> host path (snapshot) of a folder or file, or the text of a string."""
        return {n: b.text for n, b in self.llm.environment.inputs.items()}

    def create_file(self, content: str | bytes) -> str:
        """A tool returned a File: the model refers to it by its ID (``File#1``)."""
        return self.llm.ingest(_File(self.llm.engine, data=content))

    def create_directory(self, files: Mapping[str, str | bytes]) -> str:
        """A tool returned a Directory holding ``files``."""
        return self.llm.ingest(_Directory(self.llm.engine, files=dict(files)))

    def save(self, name: str, value: str) -> str:
        """The ``Save`` tool (core/mcp.go ``saveTool``): bind output ``name`` to ``value``."""
        return self.llm.save(name, value)


@dataclass(frozen=True)
class ToolCall:
    """One tool the model asks for; ``run`` returns the tool's result text (or raises
    :class:`ToolError`)."""

    name: str
    run: Callable[[EnvView], str]


def save_file(output: str, content: str | Callable[[EnvView], str]) -> ToolCall:
    """The model makes a file of ``content`` (or what it computes from its inputs) and saves it to
    the file output ``output`` (two tool calls of a real model, one here)."""

    def run(view: EnvView) -> str:
        made = view.create_file(content(view) if callable(content) else content)
        return view.save(output, made)

    return ToolCall("Save", run)


def save_directory(output: str, files: Mapping[str, str]) -> ToolCall:
    """The model makes a folder of ``files`` and saves it to the directory output ``output``."""

    def run(view: EnvView) -> str:
        return view.save(output, view.create_directory(files))

    return ToolCall("Save", run)


def read_input(view: EnvView, name: str, rel: str = "") -> str:
    """The text of an input (a file, a file inside a directory input, or a string input)."""
    value = view.inputs[name]
    return Path(value, rel).read_text(encoding="utf-8") if rel or Path(value).is_file() else value


# -- GraphQL objects -----------------------------------------------------------------------------

#: Expected type of an output binding, by kind (core/env.go ``WithOutput``).
_TYPE_NAMES = {"directory": "Directory", "file": "File"}


def _type_name(value: _Object | str) -> str:
    return "String" if isinstance(value, str) else value.typename


@dataclass
class _Input:
    kind: str
    text: str  # host path (snapshot) or the string's value
    value: _Object | str


@dataclass
class _Output:
    expected: str  # File | Directory
    description: str
    value: _Object | None = None


class FakeEnv(_Object):
    """``Env``: inputs by name, and output bindings that ``Save`` mutates in place."""

    typename = "Env"

    def __init__(
        self,
        engine: FakeDaggerEngine,
        inputs: Mapping[str, _Input] | None = None,
        outputs: Mapping[str, _Output] | None = None,
    ) -> None:
        super().__init__(engine)
        self.inputs = dict(inputs or {})
        self.outputs = dict(outputs or {})
        self._bindings: dict[str, FakeBinding] = {}

    def _with(self, field_name: str, key: tuple[Any, ...], **changes: Any) -> FakeEnv:
        # Env.Clone clones the output bindings (core/env.go); cached by parent and arguments.
        def make() -> FakeEnv:
            data: dict[str, Any] = {
                "inputs": self.inputs,
                "outputs": {n: dataclasses.replace(o) for n, o in self.outputs.items()},
                **changes,
            }
            return FakeEnv(self.engine, **data)

        return self.engine.memo((self.id, field_name, *key), make)

    def withDirectoryInput(
        self, info: GraphQLResolveInfo[Any], name: str, value: str, description: str
    ) -> FakeEnv:
        directory = self.engine._load(value, _Directory)
        item = _Input("directory", str(directory.host_path), directory)
        key = (name, value, description)
        return self._with("withDirectoryInput", key, inputs={**self.inputs, name: item})

    def withFileInput(
        self, info: GraphQLResolveInfo[Any], name: str, value: str, description: str
    ) -> FakeEnv:
        file = self.engine._load(value, _File)
        item = _Input("file", str(file.host_path), file)
        key = (name, value, description)
        return self._with("withFileInput", key, inputs={**self.inputs, name: item})

    def withStringInput(
        self, info: GraphQLResolveInfo[Any], name: str, value: str, description: str
    ) -> FakeEnv:
        item = _Input("string", value, value)
        key = (name, value, description)
        return self._with("withStringInput", key, inputs={**self.inputs, name: item})

    def withDirectoryOutput(
        self, info: GraphQLResolveInfo[Any], name: str, description: str
    ) -> FakeEnv:
        out = {**self.outputs, name: _Output("Directory", description)}
        return self._with("withDirectoryOutput", (name, description), outputs=out)

    def withFileOutput(self, info: GraphQLResolveInfo[Any], name: str, description: str) -> FakeEnv:
        out = {**self.outputs, name: _Output("File", description)}
        return self._with("withFileOutput", (name, description), outputs=out)

    def output(self, info: GraphQLResolveInfo[Any], name: str) -> FakeBinding:
        if name not in self.outputs:
            raise GraphQLError(f"output not found: {name}")
        return self.engine.memo((self.id, "output", name), lambda: FakeBinding(self, name))


class FakeBinding(_Object):
    """``Binding``: reads the output's current value (the engine returns the binding itself)."""

    typename = "Binding"

    def __init__(self, env: FakeEnv, name: str) -> None:
        super().__init__(env.engine)
        self.env = env
        self.name = name

    @property
    def value(self) -> _Object | None:
        return self.env.outputs[self.name].value

    def isNull(self, info: GraphQLResolveInfo[Any]) -> bool:
        return self.value is None

    def digest(self, info: GraphQLResolveInfo[Any]) -> str:
        # Binding.Digest: the value's ID digest, or a hash of its JSON ("null") (core/env.go).
        text = "null" if self.value is None else self.value.id
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def asDirectory(self, info: GraphQLResolveInfo[Any]) -> _Object:
        if not isinstance(self.value, _Directory):
            raise GraphQLError(f"binding {self.name!r} is not a Directory")
        return self.value

    def asFile(self, info: GraphQLResolveInfo[Any]) -> _Object:
        if not isinstance(self.value, _File):
            raise GraphQLError(f"binding {self.name!r} is not a File")
        return self.value


@dataclass(frozen=True)
class _Message:
    role: str  # user | assistant
    content: str
    usage: Reply | None = None
    tool_result: bool = False


class FakeTokenUsage(_Object):
    typename = "LLMTokenUsage"

    def __init__(self, engine: FakeDaggerEngine, messages: list[_Message]) -> None:
        super().__init__(engine)
        used = [m.usage for m in messages if m.usage is not None]
        self.inputTokens = sum(u.input_tokens for u in used)
        self.outputTokens = sum(u.output_tokens for u in used)
        self.cachedTokenReads = sum(u.cached_token_reads for u in used)
        self.cachedTokenWrites = sum(u.cached_token_writes for u in used)
        self.totalTokens = self.inputTokens + self.outputTokens


_EXPAND = re.compile(r"\$\{(\w+)\}|\$(\w+)")


class FakeLLM(_Object):
    """``LLM``: mutable state that ``Sync`` fills in once (see the module docstring)."""

    typename = "LLM"

    def __init__(self, engine: FakeDaggerEngine, model: str, max_api_calls: int, env: FakeEnv):
        super().__init__(engine)
        self.model_name = model
        self.max_api_calls = max_api_calls
        self.api_calls = 0
        self.environment = env
        self.messages: list[_Message] = []
        self.endpoint: _Endpoint | None = None
        self.sync_one_step = False
        self.objects: dict[str, _Object | str] = {}
        self.type_counts: dict[str, int] = {}
        self.returned = False
        self._done = False
        self._err: str | None = None
        self._once = threading.Lock()

    # -- Clone and the cached calls that make one --

    def clone(self) -> FakeLLM:
        """``LLM.Clone``: history and counters copied, a fresh ``once``, no error."""
        copy = FakeLLM(self.engine, self.model_name, self.max_api_calls, self.environment)
        copy.api_calls = self.api_calls
        copy.messages = list(self.messages)
        copy.endpoint = self.endpoint
        copy.sync_one_step = self.sync_one_step
        copy.objects = dict(self.objects)
        copy.type_counts = dict(self.type_counts)
        return copy

    def _derived(self, field_name: str, key: tuple[Any, ...], change: Callable[[FakeLLM], None]):
        def make() -> FakeLLM:
            copy = self.clone()
            change(copy)
            return copy

        return self.engine.memo((self.id, field_name, *key), make)

    def withEnv(self, info: GraphQLResolveInfo[Any], env: str) -> FakeLLM:
        loaded = self.engine._load(env, FakeEnv)
        return self._derived("withEnv", (env,), lambda c: setattr(c, "environment", loaded))

    def withPrompt(self, info: GraphQLResolveInfo[Any], prompt: str) -> FakeLLM:
        def expand(match: re.Match[str]) -> str:  # os.Expand over the env's inputs
            name = match.group(1) or match.group(2)
            item = self.environment.inputs.get(name)
            if item is None:
                return f"${name}"
            return item.text if item.kind == "string" else name

        text = _EXPAND.sub(expand, prompt)
        return self._derived(
            "withPrompt", (prompt,), lambda c: c.messages.append(_Message("user", text))
        )

    def withModel(self, info: GraphQLResolveInfo[Any], model: str) -> FakeLLM:
        def change(copy: FakeLLM) -> None:
            copy.model_name, copy.endpoint = model, None

        return self._derived("withModel", (model,), change)

    def attempt(self, info: GraphQLResolveInfo[Any], number: int) -> FakeLLM:
        return self._derived("attempt", (number,), lambda c: None)

    # -- fields that do not sync --

    def hasPrompt(self, info: GraphQLResolveInfo[Any]) -> bool:
        return bool(self.messages) and self.messages[-1].role == "user"

    def model(self, info: GraphQLResolveInfo[Any]) -> str:
        return self._route().model

    def provider(self, info: GraphQLResolveInfo[Any]) -> str:
        return self._route().provider

    # -- fields that sync --

    def step(self, info: GraphQLResolveInfo[Any]) -> str:
        stepped = self._derived("__step", (), lambda c: setattr(c, "sync_one_step", True))
        stepped.sync()
        return stepped.id

    def env(self, info: GraphQLResolveInfo[Any]) -> FakeEnv:
        self.sync()
        return self.environment

    def lastReply(self, info: GraphQLResolveInfo[Any]) -> str:
        self.sync()
        replies = [m.content for m in self.messages if m.role == "assistant" and m.content]
        return replies[-1] if replies else "(no reply)"

    def tokenUsage(self, info: GraphQLResolveInfo[Any]) -> FakeTokenUsage:
        self.sync()
        return FakeTokenUsage(self.engine, self.messages)

    # -- the engine's loop --

    def sync(self) -> None:
        """``LLM.Sync``: run the loop once; every later call returns its stored error."""
        with self._once:
            if not self._done:
                try:
                    self._loop()
                except GraphQLError as exc:
                    self._err = exc.message
                self._done = True
        if self._err is not None:
            raise GraphQLError(self._err)

    def _route(self) -> _Endpoint:
        if self.endpoint is None:
            self.endpoint = self.engine.model.route(self.model_name)
        return self.endpoint

    def _loop(self) -> None:
        if not any(m.role == "user" for m in self.messages):
            return
        model: ScriptedModel = self.engine.model
        while True:
            if self.max_api_calls > 0 and self.api_calls >= self.max_api_calls:
                raise GraphQLError(f"reached API call limit: {self.api_calls}")
            self.api_calls += 1
            endpoint = self._route()
            reply = self._send(model, endpoint)
            self.messages.append(_Message("assistant", reply.text, reply))
            if not reply.tool_calls:
                return  # the model ended its turn
            view = EnvView(self)
            for call in reply.tool_calls:
                try:
                    result = call.run(view)
                except ToolError as exc:
                    result = str(exc)
                self.messages.append(_Message("user", result, tool_result=True))
            if self.returned or self.sync_one_step:
                return

    def _send(self, model: ScriptedModel, endpoint: _Endpoint) -> Reply:
        messages = tuple(m.content for m in self.messages)
        started, wait = model.clock.monotonic(), RETRY_INITIAL_S
        while True:
            try:
                return model.request(endpoint, messages)
            except _Refused as refused:
                elapsed = model.clock.monotonic() - started
                if not refused.failure.retryable(endpoint.provider) or (
                    elapsed + wait > RETRY_ELAPSED_S
                ):
                    model.gave_up(refused.failure)
                    raise GraphQLError(f"not retrying: {refused}") from None
                model.clock.sleep(wait)
                wait = min(wait * RETRY_MULTIPLIER, RETRY_MAX_S)

    # -- what the tools do to the LLM's MCP state --

    def ingest(self, obj: _Object) -> str:
        """``MCP.Ingest``: an object a tool returned, named ``Type#N`` for the model."""
        count = self.type_counts.get(obj.typename, 0) + 1
        self.type_counts[obj.typename] = count
        name = f"{obj.typename}#{count}"
        self.objects[name] = obj
        return name

    def save(self, name: str, value: str) -> str:
        """The ``Save`` tool (core/mcp.go ``saveTool``)."""
        outputs = self.environment.outputs
        output = outputs.get(name)
        if output is None:
            raise ToolError(f'unknown output: "{name}" - please declare it first')
        found = self.objects.get(value)
        if found is None and value in self.environment.inputs:
            found = self.environment.inputs[value].value
        if found is None:
            raise ToolError(f"object not found for argument {name}: {value}")
        actual = _type_name(found)
        if actual != output.expected or isinstance(found, str):
            raise ToolError(f"incompatible types: {name} must be {output.expected}, got {actual}")
        output.value = found
        self.returned = all(o.value is not None for o in outputs.values())
        return "\n".join(
            sorted(
                f"- [{'x' if o.value is not None else ' '}] {n} ({o.expected}): {o.description}"
                for n, o in outputs.items()
            )
        )


def new_llm(engine: FakeDaggerEngine, model: str | None, max_api_calls: int | None) -> FakeLLM:
    """``Query.llm(model:, maxAPICalls:)``: cached per session (``PerSessionInput``); its env is
    the session client's ``Query.env`` (core/llm.go ``NewLLM``)."""
    key = ("llm", engine.session_scope, model or "", max_api_calls or 0)
    return engine.memo(
        key, lambda: FakeLLM(engine, model or "", max_api_calls or 0, new_env(engine))
    )


def new_env(engine: FakeDaggerEngine) -> FakeEnv:
    """``Query.env``: cached per client (``PerClientInput``, core/schema/env.go)."""
    return engine.memo(("env", engine.session_scope), lambda: FakeEnv(engine))
