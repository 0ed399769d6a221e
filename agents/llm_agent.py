"""From an ``llm`` agent definition to the :class:`~adapters.llm_contract.LlmSpec` one run needs.

The prompt, the inputs' values and the outputs' paths are filled from the run's parameters, the
same way a container agent's command is; input and output host paths are made absolute. The spec
names the provider key (``llm.key``, else the one provider key among ``secrets``) but never holds
its value: the engine reads the key itself (ADR 0021).

Examples:
    >>> from agents.loader import SHIPPED_DEFINITIONS, load_file
    >>> agent = load_file(SHIPPED_DEFINITIONS / "summarize-llm.yaml")
    >>> spec = llm_step_spec(agent, {"report": "/data/results"})
    >>> spec.key_name, spec.outputs["summary"].path
    ('ANTHROPIC_API_KEY', '/data/results/summary.md')
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from adapters.contract import describe_validation_error
from adapters.errors import InvalidInputError
from adapters.llm_contract import LlmBudget, LlmInput, LlmOutput, LlmSpec
from agents.spec import PROVIDER_KEYS, AgentSpec, ParamValue
from agents.template import render_text

__all__ = ["llm_step_spec", "provider_key"]


def provider_key(agent: AgentSpec) -> str:
    """The name of the provider key an llm agent's model uses.

    Raises:
        InvalidInputError: ``agent`` is not an llm agent.
    """
    if agent.llm is None:
        raise InvalidInputError(f"agent {agent.name!r} is a container agent; it has no model")
    if agent.llm.key is not None:
        return agent.llm.key
    return next(k for k in agent.secrets if k in PROVIDER_KEYS)  # the validator ensured one


def llm_step_spec(
    agent: AgentSpec,
    params: Mapping[str, ParamValue | None] | None = None,
    *,
    name: str | None = None,
) -> LlmSpec:
    """The llm step for one run of ``agent`` with ``params``.

    Raises:
        InvalidInputError: ``agent`` is not an llm agent, a parameter is missing or unknown, or the
            filled-in spec is not valid (the message names the field).
    """
    llm = agent.llm
    if llm is None:
        raise InvalidInputError(f"agent {agent.name!r} is a container agent; it has no model")
    values = agent.parameter_values(params or {})

    try:
        return LlmSpec(
            name=name or agent.name,
            model=llm.model,
            prompt=render_text(llm.prompt, values),
            key_name=provider_key(agent),
            inputs={
                n: LlmInput(
                    kind=i.kind, value=i.host_value(values, name=n), description=i.description
                )
                for n, i in llm.inputs.items()
            },
            outputs={
                n: LlmOutput(
                    kind=o.kind, path=o.host_value(values, name=n), description=o.description
                )
                for n, o in llm.outputs.items()
            },
            budget=LlmBudget(**llm.budget.model_dump()),
            timeout_s=agent.timeout_s,
            trace_content=llm.trace_content,
        )
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc, f"agent {agent.name!r}")) from None
