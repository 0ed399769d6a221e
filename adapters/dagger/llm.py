"""Run one llm step on a Dagger engine through its LLM API, within a budget.

:class:`DaggerLlmRunner` turns an :class:`~adapters.llm_contract.LlmSpec` into an ``Env`` (each
input a ``with<Kind>Input`` binding, each output a ``with<Kind>Output`` declaration) and an
``llm(model:, maxAPICalls:)`` with that environment and the prompt, on a branch of its own
(``attempt(number:)``), drives the model's loop one ``step`` at a time, reads ``tokenUsage`` after
each, writes the outputs the model bound to their host paths, and returns a plain
:class:`~adapters.llm_contract.LlmResult`. Like :mod:`adapters.dagger.runner`, nothing it returns
or raises is a Dagger type. Every query of the LLM API is in :mod:`adapters.dagger.llm_api`,
with what the engine's source says about each.

The loop:
    While the model has a queued prompt or tool results (``hasPrompt``, which never syncs) and
    not every declared output is bound by this run, one ``step`` is one model API call plus the
    tool calls it asked for (dagger/dagger ``core/llm.go``: ``LLM.Step`` sets ``syncOneStep``,
    ``loop`` returns after the tool calls). Before a step the number of calls is checked against
    ``max_api_calls``; after it the conversation's token usage against ``max_tokens``. Past
    either, the step stops with :class:`~adapters.errors.BudgetExceededError`, which carries the
    calls and tokens used. ``tokenUsage`` is cumulative (the engine sums it over the
    conversation's messages), so the total of every call is what is compared; the call that
    passes the limit has been made and paid for. Nothing is asked of an LLM that was not stepped:
    on the engine its ``env``, ``lastReply`` and ``tokenUsage`` would run the model's whole loop
    first. The engine also gets ``maxAPICalls``, so it stops by itself at the same limit.

Each run is a new branch:
    ``llm`` is cached per session and an LLM keeps its loop's error, so the same chain asked
    again in a session (a retry, or the same step run twice on a flow run's shared session)
    would get the earlier result or failure back without a request to the provider. Each run
    steps ``attempt(number:)`` with a number drawn for it, reads its inputs uncached, and counts
    an output only when it was bound after the run began.

The provider key (ADR 0021):
    The engine never takes a key as an argument in v0.21: for every new LLM its router reads
    ``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY`` or ``GEMINI_API_KEY`` (the one the model's provider
    uses) from a ``.env`` file in the working directory of the session's process, then from that
    process's environment, and resolves a value that is a secret reference (``core/llm.go``:
    ``NewLLMRouter``, ``LLMRouter.Route``). :mod:`adapters.llm_route` reads the same sources the
    same way: this module never sends the key, refuses an engine default model the declared key
    does not serve before the engine is asked, and masks the value the engine will use in the
    reply, in engine log lines and in error messages.

Errors (:func:`translate_llm_error`): the engine retries Anthropic's and Google's passing failures
itself (for up to two minutes, ``core/llm.go``: ``loop``'s ``backoff.Retry`` and the providers'
``IsRetryable``; never OpenAI's or other endpoints') and then reports ``not retrying: <the
provider client's error>``; a step's ``timeout_s`` must leave room for that retry
(:func:`adapters.llm_route.timeout_problem`):

    provider said                                    platform error              retried
    429, rate limit, 5xx, overloaded                 ProviderUnavailableError    yes
    401/403, authentication or permission error,     ProviderKeyError            no
      no key configured (no valid endpoint)
    404 / not_found_error about the model            UnknownModelError           no
    reached API call limit                           BudgetExceededError         no
    (anything else: the table of dagger_runner)      EngineConnectionError ...   yes

Examples:
    >>> import asyncio
    >>> from adapters.llm_contract import LlmSpec
    >>> spec = LlmSpec(name="ask", model="claude-sonnet-4-5", prompt="Say hi.",
    ...                key_name="ANTHROPIC_API_KEY")
    >>> result = asyncio.run(DaggerLlmRunner().run(spec))  # doctest: +SKIP
    >>> result.usage.total_tokens  # doctest: +SKIP
    42
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from pathlib import Path

import dagger

from adapters import tracing
from adapters.contract import tail
from adapters.dagger import _shared
from adapters.dagger import llm_api as api
from adapters.dagger.errors import FOREIGN_ERRORS, describe, scrub, translate_error
from adapters.dagger.runner import DaggerRunner, host_write_errors
from adapters.errors import (
    AiopError,
    BudgetExceededError,
    EngineConnectionError,
    EngineUnavailableError,
    InvalidSpecError,
    ProviderKeyError,
    ProviderUnavailableError,
    StepTimeoutError,
    UnknownModelError,
)
from adapters.llm_contract import LlmResult, LlmSpec, TokenUsage
from adapters.llm_route import ENGINE_RETRY_S, EngineConfig, timeout_problem
from adapters.ownership import check_output, receive
from adapters.redaction import mask_secrets
from adapters.runner import LineSink

__all__ = ["DaggerLlmRunner", "llm_origin", "translate_llm_error"]

_BUDGET = re.compile(r"reached API call limit", re.I)
_KEY = re.compile(
    r"(?<![\w.])(?:401|403)(?![\w.])|authentication_error|permission_error|invalid x-api-key"
    r"|x-api-key header is required|incorrect api key|invalid api key|api key not valid"
    r"|no valid LLM endpoint configuration|unauthorized",
    re.I,
)
_MODEL = re.compile(
    r"not_found_error|model_not_found|unknown model|model \S+ (?:does not exist|not found)"
    r"|(?<![\w.])404(?![\w.])",
    re.I,
)
_PASSING = re.compile(
    r"(?<![\w.])(?:429|5\d\d)(?![\w.])|rate.?limit|too many requests|overloaded"
    r"|internal server error|service unavailable|bad gateway|timed? ?out",
    re.I,
)


def translate_llm_error(
    exc: BaseException, *, spec: LlmSpec, secrets: Sequence[str], connected: bool = True
) -> AiopError:
    """The platform error for a foreign exception raised while an llm step ran.

    Examples:
        >>> from dagger import QueryError
        >>> from dagger._exceptions import QueryErrorValue
        >>> from gql.graphql_request import GraphQLRequest
        >>> from adapters.llm_contract import LlmSpec
        >>> spec = LlmSpec(name="s", prompt="p", key_name="ANTHROPIC_API_KEY")
        >>> said = QueryErrorValue(message="not retrying: 429 Too Many Requests")
        >>> error = QueryError([said], GraphQLRequest("{ version }"))
        >>> type(translate_llm_error(error, spec=spec, secrets=[])).__name__
        'ProviderUnavailableError'
    """
    detail = mask_secrets(describe(exc), secrets)
    if connected and isinstance(exc, dagger.QueryError):
        model = spec.model or "the engine's default model"
        if _BUDGET.search(detail):
            return BudgetExceededError(
                f"the model made max_api_calls={spec.budget.max_api_calls} API calls without"
                f" finishing ({detail}); raise llm.budget.max_api_calls or make the prompt"
                " narrower",
                step=spec.name,
                limit="max_api_calls",
                allowed=spec.budget.max_api_calls,
                used=spec.budget.max_api_calls,
            )
        if _KEY.search(detail) and not _PASSING.search(detail):
            found = EngineConfig().key(spec.key_name).found_in
            read = f"; the engine read it from {found}" if found else ""
            return ProviderKeyError(
                f"the {spec.provider} provider refused the key or found none ({detail}{read});"
                f" set {spec.key_name} to a valid key in a .env file in the working directory"
                " or in the environment of the process that starts the engine session (or of"
                " the `dagger run` that provides it)",
                step=spec.name,
            )
        if _MODEL.search(detail) and not _PASSING.search(detail):
            return UnknownModelError(
                f"the {spec.provider} provider does not know the model {model!r} ({detail});"
                " fix llm.model in the agent definition (a model name the provider lists)",
                step=spec.name,
            )
        if _PASSING.search(detail):
            retried = ENGINE_RETRY_S.get(spec.provider)
            engine = (
                f"the engine retried it for up to {retried:g} s first"
                if retried
                else f"the engine does not retry the {spec.provider} provider itself"
            )
            return ProviderUnavailableError(
                f"the {spec.provider} provider turned the request away for now ({detail}); {engine},"
                " and the step is retried with backoff while its retry policy allows",
                step=spec.name,
            )
    error = translate_error(exc, connected=connected)
    error.step = spec.name
    error.message = mask_secrets(error.message, secrets)
    error.args = (error.message,)
    return error


def llm_origin(spec: LlmSpec) -> str:
    """What an llm step would write, as a digest (recorded in the manifests of its outputs)."""
    import hashlib

    return hashlib.sha256(spec.model_dump_json(exclude={"trace_content"}).encode()).hexdigest()[:32]


class DaggerLlmRunner:
    """Runs llm steps on a Dagger engine: on the flow run's shared session when one is open
    (:meth:`adapters.dagger.runner.DaggerRunner.session`), else on a session of its own.

    Args:
        runner: opens sessions when no shared one is open (default ``DaggerRunner()``).

    Examples:
        >>> DaggerLlmRunner().backend
        'dagger'
    """

    backend = "dagger"

    def __init__(self, runner: DaggerRunner | None = None) -> None:
        self._runner = runner or DaggerRunner()

    async def run(
        self,
        spec: LlmSpec,
        *,
        key_value: str | None = None,
        attempt: int = 1,
        on_line: LineSink | None = None,
    ) -> LlmResult:
        """Run ``spec`` once.

        Args:
            spec: the llm step.
            key_value: a value to mask everywhere, besides the provider key the engine will use
                (:meth:`adapters.llm_route.EngineConfig.key`, always masked).
            attempt: which attempt this is (copied into the result).
            on_line: receives ``("engine", line)`` for each line about the run (masked).

        Raises:
            InvalidSpecError: an input path is missing, an output destination holds files the
                platform did not write, the model did not produce a declared output, or the
                engine's default model (no ``spec.model``) does not use the declared key.
            BudgetExceededError: the model needed more API calls or tokens than the budget.
            ProviderKeyError, UnknownModelError: the provider refused the key or the model.
            ProviderUnavailableError: the provider stayed rate-limited or failing.
            EngineUnavailableError, EngineConnectionError: the engine could not be used.
            StepTimeoutError: the step ran longer than ``spec.timeout_s``.
            UnsupportedEngineError: the engine speaks another LLM API (Dagger 1.0).
        """
        started = time.monotonic()
        config = EngineConfig()
        secrets = [*config.key(spec.key_name).masked, *([key_value] if key_value else [])]
        tracing.register_secrets(secrets)
        _check_paths(spec)
        _check_route(spec, config)
        route = config.route(spec.model) if spec.model is None else None
        model = spec.model or (route.model if route is not None else None)
        # Unless the agent opted in to content, every request of the run is unsampled: the engine
        # then records no span of the model's loop, whose calls carry the prompt.
        with tracing.engine_requests(sampled=spec.trace_content):
            shared = _shared.current()
            if shared is not None:
                shared.secrets.extend(secrets)
                async with shared.lease() as client:
                    try:
                        return await self._execute(
                            client, spec, secrets, attempt, started, on_line, model
                        )
                    except (EngineConnectionError, EngineUnavailableError):
                        shared.mark_broken(client)
                        raise
            opened = await self._runner.open_connection(
                self._runner.provision_timeout_s, on_line, secrets, None
            )
            try:
                return await self._execute(
                    opened.client, spec, secrets, attempt, started, on_line, model
                )
            finally:
                await opened.close()

    async def _execute(
        self,
        client: dagger.Client,
        spec: LlmSpec,
        secrets: list[str],
        attempt: int,
        started: float,
        on_line: LineSink | None,
        model_name: str | None,
    ) -> LlmResult:
        def say(line: str) -> None:
            if on_line is not None:
                on_line("engine", mask_secrets(line, secrets))

        try:
            async with asyncio.timeout(spec.timeout_s) as scope:
                await api.check_engine(client, spec)
                talk = await api.open_conversation(client, spec, api.branch_number())
                before = await api.output_digests(talk.env, spec)
                llm, calls, usage, done = talk.llm, 0, TokenUsage(), set[str]()
                # hasPrompt never syncs; everything else is asked of a stepped LLM only.
                pending = await llm.has_prompt()
                while pending:
                    if calls >= spec.budget.max_api_calls:
                        raise _over_budget(spec, "max_api_calls", calls, usage)
                    with tracing.model_call(spec.provider, model_name, calls + 1) as call:
                        llm, usage, pending, done = await self._step(
                            llm, spec, secrets, call, usage, before
                        )
                        calls += 1
                        say(f"model call {calls}: {usage.spent} tokens so far")
                        if usage.exceeds(spec.budget.max_tokens):
                            error = _over_budget(spec, "max_tokens", calls, usage)
                            call.error(error)
                            raise error
                missing = [name for name in spec.outputs if name not in done]
                if missing:
                    raise _not_produced(spec, missing[0])
                reply = await llm.last_reply()
                model = await llm.model()
                outputs = await _export_outputs(llm, spec)
        except TimeoutError as exc:
            if not scope.expired():  # a timeout of the transport, not the step's deadline
                scrub(exc, secrets)
                raise translate_llm_error(exc, spec=spec, secrets=secrets) from exc
            raise StepTimeoutError(
                f"the model ran longer than timeout_s={spec.timeout_s:g} s and was stopped",
                step=spec.name,
                timeout_s=spec.timeout_s,
            ) from exc
        except FOREIGN_ERRORS as exc:
            scrub(exc, secrets)
            raise translate_llm_error(exc, spec=spec, secrets=secrets) from exc
        return LlmResult(
            step=spec.name,
            model=model,
            reply=tail(mask_secrets(reply, secrets)),
            outputs=outputs,
            usage=usage,
            api_calls=calls,
            duration_s=time.monotonic() - started,
            attempt=attempt,
        )

    @staticmethod
    async def _step(
        llm: dagger.LLM,
        spec: LlmSpec,
        secrets: list[str],
        call: tracing.ModelCall,
        before: TokenUsage,
        digests: dict[str, str],
    ) -> tuple[dagger.LLM, TokenUsage, bool, set[str]]:
        """One model call (``step``) and what it left: the stepped LLM, the conversation's
        usage, whether a prompt is pending (tool results queued) and the outputs bound so far.

        The call's span gets its tokens (the difference of the cumulative readings) and a finish
        reason, which the engine does not report: ``tool_call`` when the model's turn left tool
        results to answer (or bound the last output), else ``stop``.
        """
        try:
            llm = await llm.step()
        except FOREIGN_ERRORS as exc:
            scrub(exc, secrets)
            error = translate_llm_error(exc, spec=spec, secrets=secrets)
            call.error(error)
            raise error from exc
        usage = await api.token_usage(llm)
        call.usage(
            input_tokens=usage.input_tokens - before.input_tokens,
            output_tokens=usage.output_tokens - before.output_tokens,
            cache_reads=usage.cached_token_reads - before.cached_token_reads,
            cache_writes=usage.cached_token_writes - before.cached_token_writes,
        )
        done: set[str] = set()
        if spec.outputs:
            done = await api.produced(llm, spec, digests)
            if len(done) == len(spec.outputs):  # the engine ended the loop on the last Save
                call.finish(["tool_call"])
                return llm, usage, False, done
        pending = await llm.has_prompt()
        call.finish(["tool_call"] if pending else ["stop"])
        return llm, usage, pending, done


def _check_route(spec: LlmSpec, config: EngineConfig) -> None:
    """Refuse, before the engine is asked, a default model whose provider the key does not serve.

    A named model was checked when the spec was made (``LlmSpec``); with none, the engine picks
    one from its configuration, which this process reads the way the engine does.
    """
    if spec.model is not None:
        return
    route = config.route(None)
    if route is None:
        return
    if route.key_name != spec.key_name:
        raise InvalidSpecError(
            f"no model is named, so the Dagger engine picks its default model {route.model!r},"
            f" which it gives {route.key_name}, not the declared {spec.key_name}; name a model"
            f" of the provider whose key is {spec.key_name} in llm.model",
            step=spec.name,
        )
    problem = timeout_problem(route.provider, spec.timeout_s)
    if problem:
        raise InvalidSpecError(f"{problem} (the default model is {route.model!r})", step=spec.name)


def _check_paths(spec: LlmSpec) -> None:
    """Refuse, before the engine is asked, a missing input or an output the platform may not write."""
    for name, item in spec.inputs.items():
        path = Path(item.value)
        if item.kind == "directory" and not path.is_dir():
            raise InvalidSpecError(
                f"input {name!r}: {item.value!r} is not a folder; create it or fix the path",
                step=spec.name,
            )
        if item.kind == "file" and not path.is_file():
            raise InvalidSpecError(
                f"input {name!r}: {item.value!r} is not a file; create it or fix the path",
                step=spec.name,
            )
    for name, out in spec.outputs.items():
        try:
            check_output(Path(out.path), out.kind, label=f"output {name!r} ({out.path})")
        except InvalidSpecError as exc:
            raise InvalidSpecError(exc.message, step=spec.name) from None


def _over_budget(spec: LlmSpec, limit: str, calls: int, usage: TokenUsage) -> BudgetExceededError:
    if limit == "max_api_calls":
        allowed, used = spec.budget.max_api_calls, calls
        what = f"{calls} model API calls without finishing"
    else:
        allowed, used = spec.budget.max_tokens, usage.spent
        what = f"{usage.spent} tokens after {calls} model API call(s)"
    return BudgetExceededError(
        f"the model used {what}, past its budget of {limit}={allowed}; it was stopped and its"
        f" outputs were not written. Raise llm.budget.{limit} in the agent definition, or give"
        " it a narrower task or smaller inputs",
        step=spec.name,
        limit=limit,
        allowed=allowed,
        used=used,
        api_calls=calls,
        usage=usage.model_dump(),
    )


def _not_produced(spec: LlmSpec, name: str) -> InvalidSpecError:
    out = spec.outputs[name]
    return InvalidSpecError(
        f"the model finished without producing output {name!r} ({out.description}); say in the"
        f" prompt what to put in the output {name!r}, or remove it from llm.outputs",
        step=spec.name,
    )


async def _export_outputs(llm: dagger.LLM, spec: LlmSpec) -> dict[str, str]:
    """Write every declared output to its host path (each atomically, under ADR 0013's rules)."""
    env = llm.env()
    written: dict[str, str] = {}
    for name, out in spec.outputs.items():
        binding = env.output(name)
        if await binding.is_null():
            raise _not_produced(spec, name)
        dest = Path(out.path)
        with (
            receive(
                dest, out.kind, what=f"output {name!r}", origin=llm_origin(spec), step=spec.name
            ) as landing,
            host_write_errors(landing),
        ):
            if out.kind == "directory":
                await binding.as_directory().export(str(landing))
            else:
                await binding.as_file().export(str(landing))
        written[name] = str(dest)
    return written
