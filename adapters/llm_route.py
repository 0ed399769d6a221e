"""Which model, provider and key the Dagger engine uses for an llm step, decided as it decides.

The engine never takes a provider key as an argument: its router (dagger/dagger v0.21.8,
``core/llm.go``) picks the provider from the model's name and reads the key itself. The platform
needs the same answer before anything runs, to refuse a key that the model's provider does not
read, to name the breaker after the provider that is really called, and to mask the value the
engine will really use. This module is that answer, with no ``dagger`` import:

* **the provider follows the model's name** (``LLMRouter.Route``): ``claude-`` or ``anthropic/``
  is Anthropic, ``gpt-`` or ``openai/`` OpenAI, ``gemini-`` or ``google/`` Google; ``mistral-``
  is refused by the engine; anything else is "other", an OpenAI-compatible endpoint that uses the
  OpenAI key and ``OPENAI_BASE_URL``. The aliases ``claude``/``anthropic``, ``gpt``/``openai``,
  ``gemini``/``google``, ``llama``/``meta`` name the provider's default model
  (``resolveModelAlias``).
* **no model: the engine's default** (``DefaultModel``): ``OPENAI_MODEL``, ``ANTHROPIC_MODEL``,
  ``GEMINI_MODEL``, whichever is set first; else the OpenAI key (``gpt-4.1``), the Anthropic key
  (``claude-sonnet-4-5``), ``OPENAI_BASE_URL`` (``llama-3.2``), the Gemini key
  (``gemini-2.5-flash``): with both an OpenAI and an Anthropic key the default is OpenAI's.
* **where the key is read** (``NewLLMRouter``, ``LoadConfig``): from a ``.env`` file in the
  working directory of the process that starts the engine session first, then from that
  process's environment. An entry in ``.env`` wins even when it is empty. The session's process
  is the ``dagger session`` the SDK starts from this process (same working directory and
  environment), or the ``dagger run`` that started this process; both are taken to be this
  process's.
* **the engine's own retries** (``core/llm.go``: ``loop``'s ``backoff.Retry``;
  ``core/llm_anthropic.go``, ``core/llm_google.go``, ``core/llm_openai.go``: ``IsRetryable``):
  Anthropic's rate limit, overload and internal server error and Google's 429 and 503 are sent
  again with exponential backoff (1 s, x1.5, at most 30 s apart) while the waits stay within two
  minutes; OpenAI and other endpoints are never retried by the engine. A step therefore needs
  :data:`ENGINE_RETRY_S` plus a call's time before it can see a rate limit of such a provider
  (:func:`timeout_problem`).
* **secret references** (``engine/client/secretprovider``): a value such as ``env://NAME``,
  ``file://path``, ``cmd://command``, ``op://...``, ``vault://...`` is resolved by the engine,
  again for every new LLM (so an edited ``.env`` or a rotated secret applies to the next step).
  The platform resolves ``env://`` and ``file://`` the same way to mask the value; the other
  schemes run commands or reach secret stores, which it does not do: their values cannot be
  masked by the platform (the engine scrubs secrets from its own output).

Examples:
    >>> provider_of_model("claude-sonnet-4-5"), provider_of_model("llama-3.2")
    ('anthropic', 'other')
    >>> config = EngineConfig(environ={"OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "sk-2"})
    >>> config.route(None)
    Route(model='gpt-4.1', provider='openai', key_name='OPENAI_API_KEY')
    >>> config.route("claude")
    Route(model='claude-sonnet-4-5', provider='anthropic', key_name='ANTHROPIC_API_KEY')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from dotenv import dotenv_values

__all__ = [
    "CALL_ALLOWANCE_S",
    "ENGINE_RETRY_S",
    "KEY_OF_PROVIDER",
    "REFERENCE_SCHEMES",
    "EngineConfig",
    "EngineKey",
    "Route",
    "provider_of_model",
    "resolve_alias",
    "route_problem",
    "timeout_problem",
]

#: The key each provider's endpoint is given (``route*Model`` in core/llm.go).
KEY_OF_PROVIDER: dict[str, str] = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "google": "GEMINI_API_KEY",
    "other": "OPENAI_API_KEY",
}
#: Default model per provider, and the aliases that name them (core/llm.go ``modelDefault*``).
_DEFAULT_MODEL = {
    "anthropic": "claude-sonnet-4-5",
    "google": "gemini-2.5-flash",
    "openai": "gpt-4.1",
    "meta": "llama-3.2",
    "mistral": "mistral-7b-instruct",
}
_ALIASES = {"anthropic": "anthropic", "claude": "anthropic", "google": "google",
            "gemini": "google", "openai": "openai", "gpt": "openai", "meta": "meta",
            "llama": "meta", "mistral": "mistral"}  # fmt: skip
#: Secret reference schemes the engine resolves (engine/client/secretprovider/secretprovider.go).
REFERENCE_SCHEMES = ("env", "file", "cmd", "op", "vault", "libsecret", "gcp", "aws+sm", "aws+ps")


#: How long the engine keeps retrying a provider's passing failure before it gives up, per
#: provider it retries (core/llm.go: ``MaxElapsedTime = 2 * time.Minute``).
ENGINE_RETRY_S: dict[str, float] = {"anthropic": 120.0, "google": 120.0}
#: What a step's timeout must allow beyond that retry for the model's call itself.
CALL_ALLOWANCE_S = 60.0


def timeout_problem(provider: str, timeout_s: float) -> str | None:
    """Why ``timeout_s`` is too short for a step of ``provider`` (None: it is long enough).

    The engine waits out a rate limit of Anthropic or Google for up to two minutes before it
    reports it; a step stopped before then says it timed out, not that the provider refused.
    """
    retry = ENGINE_RETRY_S.get(provider)
    if retry is None or timeout_s >= retry + CALL_ALLOWANCE_S:
        return None
    least = retry + CALL_ALLOWANCE_S
    return (
        f"timeout_s={timeout_s:g} leaves no room for the Dagger engine's own retries of the"
        f" {provider} provider (it waits out a rate limit or an overload for up to {retry:g} s"
        f" before it reports it); give the agent timeout_s: {least:g} or more"
    )


def resolve_alias(model: str) -> str:
    """``model``, or the default model an alias (``claude``, ``gpt`` ...) stands for."""
    alias = _ALIASES.get(model)
    return _DEFAULT_MODEL[alias] if alias else model


def provider_of_model(model: str) -> str:
    """The provider the engine sends ``model`` to: ``anthropic``, ``openai``, ``google`` or
    ``other`` (an OpenAI-compatible endpoint).

    Raises:
        ValueError: a model the engine refuses (``mistral-``, ``replay-``).
    """
    model = resolve_alias(model)
    if model.startswith(("claude-", "anthropic/")):
        return "anthropic"
    if model.startswith(("gpt-", "openai/")):
        return "openai"
    if model.startswith(("gemini-", "google/")):
        return "google"
    if model.startswith(("mistral-", "mistral/")):
        raise ValueError(
            f"model {model!r}: the Dagger engine does not support mistral models yet (it says"
            " 'mistral models are not yet supported'); choose an Anthropic, OpenAI or Google model"
        )
    if model.startswith(("replay-", "replay/")):
        raise ValueError(f"model {model!r} replays a recorded conversation; it is not a model")
    return "other"


def route_problem(model: str, key_name: str) -> str | None:
    """Why a step that names ``model`` cannot declare ``key_name`` (None: it can)."""
    provider = provider_of_model(model)
    wanted = KEY_OF_PROVIDER[provider]
    if wanted == key_name:
        return None
    which = "an OpenAI-compatible endpoint (OPENAI_BASE_URL)" if provider == "other" else provider
    return (
        f"model {model!r} is served by {which}, and the Dagger engine gives it the key in"
        f" {wanted}, not the declared {key_name}; declare {wanted} (llm.key and secrets), or"
        f" choose a model of the provider whose key is {key_name}"
    )


class Route(NamedTuple):
    """The model the engine will run (after aliases and defaults), its provider and key."""

    model: str
    provider: str
    key_name: str


@dataclass(frozen=True)
class EngineKey:
    """A provider key as the engine will read it.

    Attributes:
        name: the variable (``ANTHROPIC_API_KEY``).
        found_in: where the engine reads it: ``".env (PATH)"``, ``"the environment"``, or None.
        reference: the secret reference the value is, if it is one (``env://X``...).
        value: what the engine will use, when the platform can read it (plain values,
            ``env://`` and ``file://`` references).
        problem: why the engine will fail to read it (a reference that does not resolve).
    """

    name: str
    found_in: str | None = None
    reference: str | None = None
    value: str | None = None
    problem: str | None = None

    @property
    def masked(self) -> list[str]:
        """The values to mask wherever the step's text is shown."""
        return [self.value] if self.value else []


@dataclass(frozen=True)
class EngineConfig:
    """The sources the engine's router reads, from the session process's point of view.

    Args:
        cwd: the session process's working directory (default: this process's).
        environ: its environment (default: this process's).
    """

    cwd: Path = field(default_factory=Path.cwd)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def dotenv_path(self) -> Path:
        """The ``.env`` file the engine reads (it may not exist)."""
        return self.cwd / ".env"

    def _from_file(self) -> dict[str, str]:
        path = self.dotenv_path
        if not path.is_file():
            return {}
        return {k: v or "" for k, v in dotenv_values(path).items()}

    def key(self, name: str) -> EngineKey:
        """Where the engine finds ``name`` and what it will use (``LoadConfig``'s lookup)."""
        from_file = self._from_file()
        if name in from_file:
            found_in, raw = f".env ({self.dotenv_path})", from_file[name]
        elif name in self.environ:
            found_in, raw = "the environment", self.environ[name]
        else:
            return EngineKey(name)
        if not raw:
            return EngineKey(name)
        scheme, sep, rest = raw.partition("://")
        if not sep or scheme not in REFERENCE_SCHEMES:
            return EngineKey(name, found_in, value=raw)
        if scheme == "env":
            if rest not in self.environ:
                why = f"{name} in {found_in} is {raw}, and {rest} is not set"
                return EngineKey(name, found_in, raw, problem=why)
            return EngineKey(name, found_in, raw, value=self.environ[rest] or None)
        if scheme == "file":
            path = Path(rest).expanduser()
            path = path if path.is_absolute() else self.cwd / path
            try:
                return EngineKey(name, found_in, raw, value=path.read_text(encoding="utf-8"))
            except OSError as exc:
                why = f"{name} in {found_in} is {raw}, which cannot be read ({exc.strerror})"
                return EngineKey(name, found_in, raw, problem=why)
        return EngineKey(name, found_in, raw)  # resolved by the engine only

    def _setting(self, name: str) -> str:
        """A plain router setting (``*_MODEL``, ``OPENAI_BASE_URL``), ``.env`` first."""
        key = self.key(name)
        return key.value or ("" if key.found_in is None else key.reference or "")

    def default_model(self) -> str | None:
        """The model the engine picks when the step names none (``DefaultModel``)."""
        for name in ("OPENAI_MODEL", "ANTHROPIC_MODEL", "GEMINI_MODEL"):
            if self._setting(name):
                return self._setting(name)
        for key, model in (
            ("OPENAI_API_KEY", _DEFAULT_MODEL["openai"]),
            ("ANTHROPIC_API_KEY", _DEFAULT_MODEL["anthropic"]),
            ("OPENAI_BASE_URL", _DEFAULT_MODEL["meta"]),
            ("GEMINI_API_KEY", _DEFAULT_MODEL["google"]),
        ):
            if self.key(key).found_in is not None:
                return model
        return None

    def route(self, model: str | None) -> Route | None:
        """The model, provider and key the engine uses for ``model`` (None: its default; None is
        returned when there is no default either).

        Raises:
            ValueError: a model the engine refuses.
        """
        chosen = resolve_alias(model) if model else self.default_model()
        if not chosen:
            return None
        provider = provider_of_model(chosen)
        return Route(chosen, provider, KEY_OF_PROVIDER[provider])
