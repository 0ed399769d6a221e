"""The one error tree of the platform.

Every failure a step can meet is one of these classes. Runners translate foreign errors (Dagger SDK,
transport, subprocess, timeouts) into this tree once, at the boundary, with ``raise ... from exc``;
nothing above ``adapters/`` ever sees a foreign exception type.

```
AiopError                          root; never raised itself
├── InvalidInputError              permanent: bad spec or bad input; never retried
│   └── InvalidSpecError           a StepSpec that cannot run as written
├── InfrastructureError            transient: retried with backoff; counted by one breaker:
│   ├── EngineUnavailableError     no engine could be reached or provisioned        (engine's)
│   │   └── ProvisioningTimeoutError   provisioning passed its hard limit (a hung CLI)  (engine's)
│   ├── EngineConnectionError      the engine or its transport broke while a step ran (engine's)
│   ├── RegistryUnavailableError   the image's registry could not be reached, for now (agent's)
│   ├── StepTimeoutError           the step ran past its timeout_s and was stopped  (agent's)
│   └── ProviderUnavailableError   an LLM provider refused for now: 429, 5xx, overload (provider's)
├── StepFailedError                the step's own command exited non-zero (the engine is healthy);
│                                  permanent unless the exit code is declared transient for the step
├── LlmRefusedError                permanent: an LLM provider will not serve this request as written
│   ├── ProviderKeyError           the provider key is missing or the provider refused it (401/403)
│   └── UnknownModelError          the provider does not know the model (404)
├── BudgetExceededError            permanent: an llm step used more API calls or tokens than allowed
├── StorageLimitError              permanent: a host write met a full file system, a quota or
│                                  the file size limit (ulimit -f)
├── UnsupportedEngineError         permanent: the session's engine speaks an LLM API the platform does not
└── CircuitOpenError               a circuit breaker is open: failed fast, no engine contact
```

Each error carries ``transient`` (whether a retry may help: the one thing ``run_step``'s retry
condition reads), ``counted_by`` (the one kind of breaker it proves something about, which counts it
as a failure: ``engine``, ``agent`` or ``llm``; None for the others) and ``docs_anchor`` (its
section of the troubleshooting page), so retry conditions, breakers and the UI read the error
instead of the message. ``transient`` is a class value except for :class:`StepFailedError`, where
it is the step's declaration for that exit code.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

__all__ = [
    "AiopError",
    "BreakerKind",
    "BudgetExceededError",
    "CircuitOpenError",
    "EngineConnectionError",
    "EngineUnavailableError",
    "InfrastructureError",
    "InvalidInputError",
    "InvalidSpecError",
    "LlmRefusedError",
    "ProviderKeyError",
    "ProviderUnavailableError",
    "ProvisioningTimeoutError",
    "RegistryUnavailableError",
    "StepFailedError",
    "StepTimeoutError",
    "StorageLimitError",
    "UnknownModelError",
    "UnsupportedEngineError",
]


#: The kinds of circuit breaker: one per execution target (``engine:<target>``), per agent
#: (``agent:<name>``) and per LLM provider (``llm:<provider>``).
BreakerKind = Literal["engine", "agent", "llm"]


class AiopError(Exception):
    """Root of every error the platform raises.

    Attributes:
        transient: True when retrying the same step may succeed (``run_step`` retries exactly
            the errors whose ``transient`` is True).
        counted_by: the kind of breaker this error counts against (None: it proves nothing about
            any breaker's target).
        docs_anchor: the anchor of this error class on the troubleshooting page.
    """

    transient: bool = False
    counted_by: ClassVar[BreakerKind | None] = None
    docs_anchor: ClassVar[str] = "troubleshooting"

    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        #: Which attempt of the step raised it, when known (set by ``flows.run_step``).
        self.attempt: int | None = None

    def __str__(self) -> str:
        return f"step {self.step!r}: {self.message}" if self.step else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors defeat Exception's default pickling; Prefect pickles
        # exceptions into failed states and result storage, so rebuild from the instance dict.
        return (_rebuild, (type(self), self.message), self.__dict__)


def _rebuild(cls: type[AiopError], message: str) -> AiopError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


class InvalidInputError(AiopError):
    """The input or configuration is wrong; fix it and run again. Never retried."""

    docs_anchor = "invalid-input"


class InvalidSpecError(InvalidInputError):
    """A StepSpec cannot run as written (bad field, missing mount source, unusable image name)."""

    docs_anchor = "invalid-spec"


class InfrastructureError(AiopError):
    """The machinery around a step failed; the step itself may be fine. Retried with backoff, and
    counted by the engine's breaker unless a subclass says which other breaker it concerns."""

    transient = True
    counted_by: ClassVar[BreakerKind | None] = "engine"
    docs_anchor = "infrastructure"


class EngineUnavailableError(InfrastructureError):
    """No Dagger engine could be reached or provisioned."""

    docs_anchor = "engine-unavailable"


class ProvisioningTimeoutError(EngineUnavailableError):
    """Starting or connecting to the engine took longer than the provisioning limit."""

    docs_anchor = "provisioning-timeout"


class EngineConnectionError(InfrastructureError):
    """The engine died or the connection to it broke while a step was running."""

    docs_anchor = "engine-connection-lost"


class RegistryUnavailableError(InfrastructureError):
    """The registry of the step's image could not be reached, or failed, while the engine
    resolved or pulled the image: a network or registry outage that may pass. The engine looks a
    tag up in its registry once in every session even when it holds the image; an image pinned by
    digest needs no registry once the engine holds it.

    Counted by the agent's breaker: the engine is fine, the image this agent names cannot be had
    for now (another agent, with another image, may run)."""

    counted_by: ClassVar[BreakerKind | None] = "agent"
    docs_anchor = "registry-unavailable"


class StepTimeoutError(InfrastructureError):
    """The step ran longer than its ``timeout_s`` and was stopped.

    Counted by the agent's breaker: the engine ran the command; this agent's step did not finish
    in the time it declares."""

    counted_by: ClassVar[BreakerKind | None] = "agent"
    docs_anchor = "step-timeout"

    def __init__(self, message: str, *, step: str | None = None, timeout_s: float) -> None:
        super().__init__(message, step=step)
        self.timeout_s = timeout_s


class ProviderUnavailableError(InfrastructureError):
    """An LLM provider turned a request away for now (429 rate limit, 5xx, overloaded), after the
    engine's own retries; retried with backoff and counted by the provider's breaker."""

    counted_by: ClassVar[BreakerKind | None] = "llm"
    docs_anchor = "llm-provider-unavailable"


class LlmRefusedError(AiopError):
    """An LLM provider will not serve the request as written; retrying cannot help."""

    docs_anchor = "llm-refused"


class ProviderKeyError(LlmRefusedError):
    """The provider key is missing where the engine reads it, or the provider refused it."""

    docs_anchor = "llm-provider-key"


class UnknownModelError(LlmRefusedError):
    """The provider does not know the model the agent names."""

    docs_anchor = "llm-unknown-model"


class BudgetExceededError(AiopError):
    """An llm step used more model API calls or tokens than its budget allows; it was stopped.

    Attributes:
        limit: which limit was passed (``max_api_calls`` or ``max_tokens``).
        allowed: the budget's value.
        used: what the step had used when it was stopped.
        api_calls: the model API calls made until then, when known.
        usage: the token counts until then (``TokenUsage`` fields), when known.
    """

    docs_anchor = "llm-budget-exceeded"

    def __init__(
        self,
        message: str,
        *,
        step: str | None = None,
        limit: str,
        allowed: int,
        used: int,
        api_calls: int | None = None,
        usage: dict[str, int] | None = None,
    ) -> None:
        super().__init__(message, step=step)
        self.limit = limit
        self.allowed = allowed
        self.used = used
        self.api_calls = api_calls
        self.usage = usage


class UnsupportedEngineError(AiopError):
    """The engine of the session speaks a version of Dagger's LLM API that the platform does not
    (the llm path speaks v0.21's; Dagger 1.0 reworked it). Container steps are not affected.

    Attributes:
        version: the engine's version.
    """

    docs_anchor = "unsupported-engine"

    def __init__(self, message: str, *, step: str | None = None, version: str) -> None:
        super().__init__(message, step=step)
        self.version = version


class StorageLimitError(AiopError):
    """Writing a result on the host met a storage limit: the file system is full, the user's disk
    quota is used up, or the file is larger than the process may write (``ulimit -f``).

    Permanent (a retry seconds later meets the same full disk) and never counted against the
    engine; the message names the file system, what was needed and what is free.
    """

    docs_anchor = "storage-limit"


class StepFailedError(AiopError):
    """The step's command exited non-zero.

    Permanent unless the step declares the exit code transient (``StepSpec.transient_exit_codes``):
    then ``transient`` (and ``transient_exit``, the constructor's name for it) is True. Never
    counted against the engine, which did its job.
    """

    docs_anchor = "step-failed"

    def __init__(
        self,
        message: str,
        *,
        step: str,
        exit_code: int,
        stderr_tail: str = "",
        transient_exit: bool = False,
    ) -> None:
        super().__init__(message, step=step)
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.transient_exit = transient_exit
        self.transient = transient_exit


class CircuitOpenError(AiopError):
    """A circuit breaker is open; the call failed fast without touching the engine.

    Transient: at the breaker's ``probe_at`` a call is let through again, so a retry then may
    succeed. ``run_step`` waits until that time before its retry (and ``execute_step`` fails the
    step at once, without a task run, when no retry would wait for it).

    Attributes:
        breaker: the breaker's name.
        opened_at: when it opened (epoch seconds).
        probe_at: when it will let a probe call through (epoch seconds).
    """

    transient = True
    docs_anchor = "circuit-open"

    def __init__(
        self,
        message: str,
        *,
        breaker: str,
        opened_at: float,
        probe_at: float,
        step: str | None = None,
    ) -> None:
        super().__init__(message, step=step)
        self.breaker = breaker
        self.opened_at = opened_at
        self.probe_at = probe_at
