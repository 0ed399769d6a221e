"""The pipeline's optional last step (``--summarize``): a ``summarize`` agent writes ``summary.md``.

It runs after the results are complete, on the result folder, through the healthiest agent with
the ``summarize`` capability (the shipped one is the llm agent ``summarize-llm``). It never fails
the run: without an engine, without a key, or when the model fails, the run's results stand and one
plain line says why there is no summary. What happened is returned (:class:`Summarized`) for
``summary.json`` and the final summary, which say whether ``summary.md`` was written and, if not,
why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.errors import AiopError
from adapters.settings import Settings
from agents import AgentManager
from flows.runtime.agent_run import run_agent
from flows.runtime.outcome import StepOutcome

__all__ = ["CAPABILITY", "Summarized", "summarize_results"]

#: The capability the step asks for.
CAPABILITY = "summarize"


@dataclass(frozen=True)
class Summarized:
    """What ``--summarize`` did: ``summary.md`` written at ``path``, or not, and why (``reason``,
    the one line the run logged). ``outcome`` is the step's, when it ran."""

    written: bool
    path: Path
    reason: str
    outcome: StepOutcome | None = None

    def as_summary(self) -> dict[str, Any]:
        """The ``summarize`` entry of ``summary.json``."""
        return {
            "written": self.written,
            "path": str(self.path) if self.written else None,
            "reason": self.reason,
        }


async def summarize_results(
    manager: AgentManager,
    results: Path,
    backend: str,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    settings: Settings,
) -> Summarized:
    """Write ``results/summary.md`` with a ``summarize`` agent; never raises.

    Args:
        manager: the agents.
        results: the run's result folder (complete, with its ``summary.json``).
        backend: the backend the run's steps used (``dagger`` or ``local``).
        logger: where the one line about a skipped or failed summary goes.
        settings: the run's platform settings.

    Returns:
        Whether ``summary.md`` was written, and the line that says so or why not.
    """
    params = {"report": str(results)}
    target = results / "summary.md"

    def not_written(line: str, outcome: StepOutcome | None = None) -> Summarized:
        logger.warning("%s", line)
        return Summarized(False, target, line, outcome)

    if backend == "local":
        return not_written(
            "--summarize skipped (the results are complete): the model runs through a Dagger"
            " engine's LLM API, and this run's steps ran on the local runner (no engine was used)"
        )
    try:
        candidates = manager.candidates(CAPABILITY, params)
        refusals = [(await manager.check_ready(a, backend))[1] for a in candidates]
    except AiopError as exc:
        return not_written(f"--summarize skipped: {exc}")
    if all(refusals):
        first = next(iter(refusals), ["no agent offers it"])
        return not_written(f"--summarize skipped (the results are complete): {first[0]}")
    outcome = await run_agent(
        manager, CAPABILITY, params, backend, step_name="summarize", settings=settings
    )
    if outcome.error is not None:
        return not_written(
            f"--summarize failed (the results are complete): {outcome.error}", outcome
        )
    tokens = outcome.llm.usage.spent if outcome.llm is not None else None
    line = f"summary written to {target}" + (f" ({tokens} tokens)" if tokens is not None else "")
    logger.info("%s", line)
    return Summarized(True, target, line, outcome)
