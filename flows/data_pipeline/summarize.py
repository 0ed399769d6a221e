"""The pipeline's optional last step (``--summarize``): a ``summarize`` agent writes ``summary.md``.

It runs after the results are complete, on the result folder, through the healthiest agent with
the ``summarize`` capability (the shipped one is the llm agent ``summarize-llm``). It never fails
the run: without an engine, without a key, or when the model fails, the run's results stand and one
plain line says why there is no summary.
"""

from __future__ import annotations

import logging
from pathlib import Path

from adapters.errors import AiopError
from adapters.settings import Settings
from agents import AgentManager
from flows.agent_run import run_agent
from flows.step_outcome import StepOutcome

__all__ = ["CAPABILITY", "summarize_results"]

#: The capability the step asks for.
CAPABILITY = "summarize"


async def summarize_results(
    manager: AgentManager,
    results: Path,
    backend: str,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    settings: Settings,
) -> StepOutcome | None:
    """Write ``results/summary.md`` with a ``summarize`` agent; never raises.

    Args:
        manager: the agents.
        results: the run's result folder (complete, with its ``summary.json``).
        backend: the backend the run's steps used (``dagger`` or ``local``).
        logger: where the one line about a skipped or failed summary goes.
        settings: the run's platform settings.

    Returns:
        The step's outcome, or None when it was skipped before anything ran.
    """
    params = {"report": str(results)}
    if backend == "local":
        logger.warning(
            "--summarize skipped (the results are complete): the model runs through a Dagger"
            " engine's LLM API, and this run's steps ran on the local runner (no engine was used)"
        )
        return None
    try:
        candidates = manager.candidates(CAPABILITY, params)
        refusals = [(await manager.check_ready(a, backend))[1] for a in candidates]
    except AiopError as exc:
        logger.warning("--summarize skipped: %s", exc)
        return None
    if all(refusals):
        first = next(iter(refusals), ["no agent offers it"])
        logger.warning("--summarize skipped (the results are complete): %s", first[0])
        return None
    outcome = await run_agent(
        manager, CAPABILITY, params, backend, step_name="summarize", settings=settings
    )
    if outcome.error is not None:
        logger.warning("--summarize failed (the results are complete): %s", outcome.error)
    else:
        tokens = outcome.llm.usage.spent if outcome.llm is not None else None
        logger.info(
            "summary written to %s%s",
            results / "summary.md",
            f" ({tokens} tokens)" if tokens is not None else "",
        )
    return outcome
