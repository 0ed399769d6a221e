"""Every query of Dagger's v0.21 LLM API that the llm adapter sends, in one place.

:mod:`adapters.dagger.llm` drives the loop and keeps the budget; this module is the part that is
specific to the engine's LLM API of v0.21 (the ``Env`` of named bindings, ``maxAPICalls``,
``hasPrompt``, ``attempt``), which Dagger 1.0 reworks (ADR 0024). How the engine behaves here,
read in its source (dagger/dagger at v0.21.8):

* ``LLM.env``, ``lastReply``, ``tokenUsage`` (and ``bindResult``, ``history``) call ``Sync`` on
  the LLM they are asked on (``core/schema/llm.go``), and ``Sync`` on an LLM that was not stepped
  runs the model's whole loop (``core/llm.go``). So they are asked only of an LLM that ``step``
  returned, where ``Sync`` has already run; ``hasPrompt``, ``model`` and ``provider`` never sync.
* ``llm`` is cached per session, and an LLM keeps the error of its loop (``llm.err``): the same
  chain asked again in the session answers with the stored result or failure and never reaches
  the provider. Every run therefore steps its own branch, ``attempt(number:)`` with a number
  drawn for the run (``attempt`` is a ``Clone`` under its own cache key).
* ``Save`` binds an output by mutating the ``Env`` that every LLM of the chain shares
  (``core/mcp.go``), and ``env`` is cached per client (``dagql/cache_inputs.go``): an ``Env``
  built the same way earlier in the session may already hold an earlier run's values. So an
  output counts as produced by this run only when its binding's digest changed since the run
  began (:func:`output_digests`, :func:`produced`), read from the ``Env`` itself before the first
  step (which does not sync anything).
* ``tokenUsage`` is the sum over the conversation's messages (``core/llm.go``): cumulative, not
  per call.

The exports of bound outputs (``Binding.asFile``/``asDirectory``, in
:func:`adapters.dagger.llm._export_outputs`) are the one other v0.21-specific use.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import NamedTuple, TypeVar

import dagger

from adapters.dagger.runner import MOUNT_EXCLUDE
from adapters.errors import UnsupportedEngineError
from adapters.llm_contract import LlmSpec, TokenUsage

__all__ = ["SUPPORTED_ENGINES", "Conversation", "branch_number", "check_engine",
           "open_conversation", "output_digests", "produced", "token_usage"]  # fmt: skip

#: The engines whose LLM API this module speaks: Dagger v0.21.x (checked against the official
#: v0.21.8 schema; the v1.0.0-beta.10 schema has no Env, no maxAPICalls, no hasPrompt, no attempt,
#: and its step returns an LLM, tests/adapters/dagger/test_api_versions.py).
SUPPORTED_ENGINES = "v0.21.x"
_SUPPORTED = re.compile(r"^v0\.21\.\d+(?:[-+].*)?$")

_T = TypeVar("_T", dagger.Env, dagger.LLM)


class Conversation(NamedTuple):
    """The run's branch of the model's conversation (never stepped yet) and its ``Env``."""

    llm: dagger.LLM
    env: dagger.Env


async def check_engine(client: dagger.Client, spec: LlmSpec) -> str:
    """The session engine's version, when its LLM API is the one this module speaks.

    Raises:
        UnsupportedEngineError: it is another (Dagger 1.0 reworked the LLM API).
    """
    version = await client.version()
    if not _SUPPORTED.match(version):
        raise UnsupportedEngineError(
            f"the Dagger engine of this session is {version}, whose LLM API the platform does not"
            f" speak (llm steps run on engines {SUPPORTED_ENGINES}); run llm agents on a"
            f" {SUPPORTED_ENGINES} engine. Container steps are not affected",
            step=spec.name,
            version=version,
        )
    return version


def branch_number() -> int:
    """A number for this run's ``attempt`` branch (a GraphQL Int), unlikely to repeat in a session.

    Drawn, not counted: several processes may share one session (``dagger run``).
    """
    return secrets.randbelow(2**31 - 2) + 1


async def open_conversation(client: dagger.Client, spec: LlmSpec, branch: int) -> Conversation:
    """``llm(model:, maxAPICalls:).withEnv(env).withPrompt(prompt).attempt(number: branch)``.

    The ``Env`` is evaluated once and loaded by its ID, so the run's reads of it and the LLM's
    use of it are the same object (its host reads are not cached, ADR 0017).
    """
    env = _by_id(client, dagger.Env, await _environment(client, spec).id())
    llm = (
        client.llm(model=spec.model, max_api_calls=spec.budget.max_api_calls)
        .with_env(env)
        .with_prompt(spec.prompt)
        .attempt(branch)
    )
    return Conversation(llm, env)


async def output_digests(env: dagger.Env, spec: LlmSpec) -> dict[str, str]:
    """Each declared output's binding digest, read from ``env`` (no LLM is synced)."""
    return {name: await env.output(name).digest() for name in spec.outputs}


async def produced(stepped: dagger.LLM, spec: LlmSpec, before: Mapping[str, str]) -> set[str]:
    """The outputs this run has bound: bound now, to something else than before it began.

    ``stepped`` must be an LLM returned by ``step`` (its ``env`` does not run the loop again).
    """
    env = stepped.env()
    done = set()
    for name in spec.outputs:
        if await env.output(name).digest() != before[name] and not await env.output(name).is_null():
            done.add(name)
    return done


async def token_usage(stepped: dagger.LLM) -> TokenUsage:
    """The conversation's token usage so far: cumulative over every call of the run."""
    usage = stepped.token_usage()
    return TokenUsage(
        input_tokens=await usage.input_tokens(),
        output_tokens=await usage.output_tokens(),
        cached_token_reads=await usage.cached_token_reads(),
        cached_token_writes=await usage.cached_token_writes(),
        total_tokens=await usage.total_tokens(),
    )


def _environment(client: dagger.Client, spec: LlmSpec) -> dagger.Env:
    """The ``Env``: each input a ``with<Kind>Input``, each output a ``with<Kind>Output``."""
    env = client.env()
    host = client.host()
    for name, item in spec.inputs.items():
        if item.kind == "directory":
            source = host.directory(item.value, exclude=list(MOUNT_EXCLUDE), no_cache=True)
            env = env.with_directory_input(name, source, item.description)
        elif item.kind == "file":
            env = env.with_file_input(name, host.file(item.value, no_cache=True), item.description)
        else:
            env = env.with_string_input(name, item.value, item.description)
    for name, out in spec.outputs.items():
        if out.kind == "directory":
            env = env.with_directory_output(name, out.description)
        else:
            env = env.with_file_output(name, out.description)
    return env


def _by_id(client: dagger.Client, kind: type[_T], object_id: str) -> _T:
    """The object of type ``kind`` with ID ``object_id``, through ``node(id:)``: how the SDK
    itself loads what ``sync`` or ``step`` returned (``Context.execute_sync``); the v0.21 engine
    has no ``load<Type>FromID`` fields."""
    return kind(client._ctx.select_id(kind._graphql_name(), object_id))
