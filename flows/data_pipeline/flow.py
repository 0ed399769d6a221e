"""The data pipeline flow: ingest -> validate -> transform (K partitions in parallel) -> aggregate
-> report, each step an agent call by capability (:class:`agents.AgentManager`), run as a
:class:`~adapters.StepSpec` through :func:`flows.run_step`.

The shipped agents (``agents/definitions``) run ``python -m flows.steps <step>`` in
``python:3.12-slim`` (Dagger) or as a host process (local runner). Intermediate outputs live in
content-addressed folders under the work directory (``<work>/<step>-<key>``, the key hashing the
step's spec, code and inputs), so a re-run with unchanged inputs finds every finished step
``Cached`` and writes its final folder from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL
from prefect.states import Failed

from adapters import AiopError, InfrastructureError, InvalidInputError, StepSpec, tracing
from adapters.chaos import FaultPlan, parse_plan
from adapters.errors import StorageLimitError
from adapters.ownership import claim, hold, set_aside, write_owned_file
from adapters.redaction import redact_url
from adapters.selection import BackendChoice, engine_for_run, resolve_runner
from adapters.settings import Settings, load_settings
from agents import AgentManager
from flows.data_pipeline.options import (
    PipelineOptions,
    check_output_folder,
    default_partitions,
    partition_runs,
    step_slots,
)
from flows.data_pipeline.summarize import summarize_results
from flows.runtime.agent_run import run_agent
from flows.runtime.outcome import StepOutcome
from flows.runtime.trace_spans import traced_run
from flows.server.crashed_runs import check_at_start
from flows.steps.pipeline import (
    AGGREGATE,
    INGEST,
    REPORT,
    RESULTS,
    TRANSFORM,
    VALIDATE,
    PipelineStep,
    pipeline_order,
    step_count,
)
from flows.steps.sample import COLUMNS as SAMPLE_COLUMNS
from flows.ui.artifacts import ProgressTracker, publish_failure, publish_summary
from flows.ui.console import flow_run_ui_url, use_docs_url
from flows.ui.history import (
    current_record,
    publish_history,
    publish_metrics,
    rows_so_far,
    step_rows,
)

__all__ = ["PipelineFailed", "PipelineOptions", "data_pipeline"]

FLOW_NAME = "data-pipeline"
_STEPS_DIR = Path(__file__).resolve().parent.parent / "steps"  # flows/steps
_SRC = "/aiop/src"
_IN = "/aiop/in"
_OUT = "/aiop/out"
_SAMPLE_GROUP_BY = "category"


class PipelineFailed(AiopError):
    """A step of the pipeline failed for good; ``cause`` is the step's error."""

    def __init__(self, message: str, *, step: str, cause: BaseException | None) -> None:
        super().__init__(message, step=step)
        self.cause = cause

    @property
    def cause_anchor(self) -> str:
        """The troubleshooting anchor of the step's error (``step-failed`` when unknown)."""
        return str(getattr(self.cause, "docs_anchor", "step-failed"))


def pinned(requirements: Sequence[str]) -> list[str]:
    """Each requirement an agent declares, pinned to the version this flow runs with when it names
    a package installed here without a version (``duckdb`` -> ``duckdb==1.4.1``), so a container
    step reads and writes files with the same library as the flow.

    Examples:
        >>> pinned(["duckdb==1.1.0", "no-such-package-here"])
        ['duckdb==1.1.0', 'no-such-package-here']
    """
    out = []
    for requirement in requirements:
        try:
            here = None if any(c in requirement for c in "=<>!~@[; ") else version(requirement)
        except PackageNotFoundError:
            here = None
        out.append(f"{requirement}=={here}" if here else requirement)
    return out


def _out(outcome: StepOutcome) -> Path:
    assert outcome.result is not None
    return Path(outcome.result.outputs[_OUT])


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write a file of the result atomically and record it in the folder's manifest."""
    write_owned_file(path.parent, path.name, (json.dumps(data, indent=2) + "\n").encode())


def _decide_group_by(options: PipelineOptions) -> PipelineOptions:
    """The column to group by, decided before any step (the CLI made the same checks): the given
    one (which the input must have), the sample's ``category``, or the input's one text column
    with 2 to 50 distinct values in its first records (:mod:`flows.steps.group_by`).

    Raises:
        InvalidInputError: the given column is not in the input, or none or several qualify.
    """
    from flows.steps._io import DataError
    from flows.steps.group_by import choose_group_by
    from flows.steps.header import check_input
    from flows.steps.schema import load_schema

    if not options.input:
        column = options.group_by or _SAMPLE_GROUP_BY
        if column not in SAMPLE_COLUMNS:
            raise InvalidInputError(
                f"--group-by {column!r} is not a column of the generated sample; its columns are"
                f" {', '.join(SAMPLE_COLUMNS)}"
            )
        reason = "given with --group-by" if options.group_by else "the generated sample's column"
        return replace(options, group_by=column, group_by_reason=reason)
    try:
        columns = check_input(options.input).columns
        if options.group_by:
            if options.group_by not in columns:
                raise InvalidInputError(
                    f"--group-by {options.group_by!r} is not a column of the input; columns are"
                    f" {', '.join(columns)}"
                )
            return replace(options, group_by_reason="given with --group-by")
        declared = load_schema(options.schema_file, columns) if options.schema_file else {}
        choice = choose_group_by(options.input, declared)
    except DataError as exc:
        raise InvalidInputError(str(exc)) from None
    return replace(options, group_by=choice.column, group_by_reason=choice.reason)


def _prepare_output(options: PipelineOptions) -> None:
    """Refuse an output folder the pipeline may not write, then claim it, before the first step.

    Claiming makes an absent or empty folder the platform's (an empty manifest), so that a work
    folder inside it, written by the first steps, is an entry of the user's that results never
    replace.
    """
    check_output_folder(
        options.output,
        input=options.input,
        schema_file=options.schema_file,
        work_dir=options.work_dir,
    )
    try:
        claim(Path(options.output).resolve())
    except OSError as exc:
        raise InvalidInputError(
            f"--output {options.output} cannot be written ({exc.strerror or exc}); give a folder"
            " you can write to, or fix its permissions"
        ) from None


@flow(name=FLOW_NAME, log_prints=False)
@traced_run(FLOW_NAME)
async def data_pipeline(
    input: str | None = None,
    rows: int = 100_000,
    seed: int = 42,
    schema_file: str | None = None,
    partitions: int | None = None,
    group_by: str | None = None,
    output: str | None = None,
    work_dir: str | None = None,
    backend: str | None = None,
    summarize: bool = False,
    chaos: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Ingest a CSV (or a generated sample), validate and quarantine it, write typed partitioned
    Parquet, aggregate per group and report, each step in its own container.

    Args:
        input: CSV file to process; None generates a sample of ``rows`` rows from ``seed``.
        rows: rows of the generated sample.
        seed: seed of the generated sample.
        schema_file: YAML file of ``column: type`` lines; other columns' types are inferred.
        partitions: Parquet partitions, transformed in parallel (default: CPU count, at most 256).
        group_by: column to aggregate by (default: ``category`` for the sample).
        output: output folder (default ``output/<timestamp>``): absent, empty, or an earlier
            result; a folder of other files is refused (InvalidInputError) before the first step.
        work_dir: where step outputs are kept between runs (default: the ``work_dir`` setting).
        backend: ``auto``, ``dagger`` or ``local`` (default: the ``backend`` setting).
        chaos: a fault plan injected into this run's steps (default: the ``chaos`` setting).
        settings: the platform settings (default: read from the environment once, here).
        summarize: last, write ``summary.md`` beside the results with a ``summarize`` agent
            (:mod:`flows.data_pipeline.summarize`); skipped with one line, never failing the run, when it
            cannot run.

    Returns:
        The content of ``summary.json``.
    """
    logger = get_run_logger()
    await check_at_start(logger)  # this run's process recorded; runs killed earlier end Crashed
    try:
        settings = settings if settings is not None else load_settings()
        use_docs_url(settings.docs_url)
        # The one place the run's defaults are filled in (the CLI passes None for "not given").
        options = PipelineOptions(
            input=input,
            rows=rows,
            seed=seed,
            schema_file=schema_file,
            partitions=partitions or default_partitions(),
            group_by=group_by,
            output=output or str(Path("output") / time.strftime("%Y%m%d-%H%M%S")),
            work_dir=work_dir or str(settings.work_dir),
            backend=backend or settings.backend,
            chaos=chaos or settings.chaos,
            summarize=summarize,
        )
        plan = parse_plan(options.chaos, source="--chaos") if options.chaos else None
        options = _decide_group_by(options)
        _prepare_output(options)
        # One run at a time in a result folder (re-entrant: the CLI already holds it).
        with hold(Path(options.output).resolve(), label=f"--output {options.output}"):
            # The run's one engine session (Dagger), or the local runner when none can start.
            async with engine_for_run(
                options.backend,
                on_line=lambda _, line: logger.info(line),
                provision_timeout_s=settings.dagger_provision_timeout_s,
                first_run_timeout_s=settings.dagger_first_run_timeout_s,
            ) as choice:
                return await _run(options, choice, settings, plan)
    except (PipelineFailed, InvalidInputError, InfrastructureError, StorageLimitError) as exc:
        # A clear one-paragraph failure instead of Prefect's traceback: the error rides in the state.
        get_run_logger().error("%s", exc)
        return Failed(message=str(exc), data=exc)  # type: ignore[return-value]


async def _run(
    options: PipelineOptions, choice: BackendChoice, settings: Settings, plan: FaultPlan | None
) -> dict[str, Any]:
    logger = get_run_logger()
    logger.info(choice.reason)
    logger.info("grouping by %r: %s", options.group_by, options.group_by_reason)
    backend = choice.backend
    # Resolved once for every step, with this run's fault plan (its hit counts fresh) injected.
    runner = resolve_runner(
        backend,
        provision_timeout_s=settings.dagger_provision_timeout_s,
        cache_dir=settings.cache_dir,
        plan=plan,
    )
    work = Path(options.work_dir).resolve()
    out_dir = Path(options.output).resolve()
    outcomes: list[StepOutcome] = []
    run_name = str(flow_run.name or "")
    # A partitioned step runs once per run of partitions (one per partition up to the step slots).
    transform_runs = len(partition_runs(options.partitions, step_slots(choice.backend)))
    progress = ProgressTracker(FLOW_NAME, total_steps=step_count(transform_runs))
    await progress.start()
    try:
        manager = AgentManager.from_settings(settings)

        async def step(
            declared: PipelineStep,
            name: str,
            params: dict[str, Any],
            mounts: dict[str, str],
            final: Path | None = None,
        ) -> StepOutcome:
            def content_addressed(spec: StepSpec, key: str) -> StepSpec:
                # Named after the step's cache key (command, environment, code and inputs), which
                # the runtime computes once for the step run.
                short = hashlib.sha256(key.encode()).hexdigest()[:16]
                where = final or work / f"{name}-{short}"
                moved = set_aside(where) if final is None else None
                if moved is not None:  # never a failed run: its bytes are kept, the step runs again
                    logger.warning(
                        "cache entry %s: %s; kept as %s and recomputed",
                        where,
                        moved.why,
                        moved.path.name,
                    )
                update = {
                    "outputs": {_OUT: str(where)},
                    "requirements": pinned(spec.requirements),
                }
                return spec.model_copy(update=update)

            outcome = await run_agent(
                manager,
                declared.capability,
                {**params, "output": _OUT},
                backend,
                step_name=name,
                mounts={str(_STEPS_DIR): f"{_SRC}/flows/steps", **mounts},
                prepare=content_addressed,
                settings=settings,
                runner=runner,
                rows_of=step_rows,
            )
            outcomes.append(outcome)
            await progress.step_done()
            if outcome.error is not None or outcome.result is None:
                summary = _summary(options, backend, outcomes, out_dir, None, None)
                summary.update(rows_so_far(outcomes))
                summary["error"] = {
                    "step": outcome.name,
                    "class": type(outcome.error).__name__,
                    "message": str(outcome.error),
                }
                try:
                    _write_json_atomically(out_dir / "summary.json", summary)
                except AiopError as exc:  # a full disk must not hide the step's own failure
                    logger.warning("summary.json of the failed run was not written: %s", exc)
                await publish_failure(FLOW_NAME, outcome.name, outcome.error, run_name)
                await publish_metrics(
                    FLOW_NAME, summary
                )  # the history shows the rows counted so far
                raise PipelineFailed(
                    str(getattr(outcome.error, "message", outcome.error)),
                    step=outcome.name,
                    cause=outcome.error,
                ) from outcome.error
            return outcome

        # 1. ingest
        ingest_mounts: dict[str, str] = {}
        if options.input:
            source = str(Path(options.input).resolve())
            ingest_mounts[source] = f"{_IN}/input.csv"
            ingest_params: dict[str, Any] = {"input": f"{_IN}/input.csv"}
        else:
            ingest_params = {"rows": options.rows, "seed": options.seed}
        ingest = await step(INGEST, INGEST.name, ingest_params, ingest_mounts)
        csv_host = source if options.input else str(_out(ingest) / "input.csv")

        # 2. validate
        validate_mounts = {csv_host: f"{_IN}/input.csv"}
        schema = None
        if options.schema_file:
            validate_mounts[str(Path(options.schema_file).resolve())] = f"{_IN}/schema.yaml"
            schema = f"{_IN}/schema.yaml"
        # Validate writes the valid rows as the K partitions: no step re-reads them to cut them.
        k = options.partitions
        validated = await step(
            VALIDATE,
            VALIDATE.name,
            {"input": f"{_IN}/input.csv", "schema": schema, "partitions": k},
            validate_mounts,
        )
        facts = json.loads((_out(validated) / VALIDATE.facts_file).read_text(encoding="utf-8"))
        group_by = str(options.group_by)

        # 3. transform: each partition's per-group statistics, K partitions in parallel
        validated_mount = {str(_out(validated)): f"{_IN}/validate"}
        # At most one step process per core with the local backend: with more partitions than
        # that, each step takes a contiguous run of them (see partition_runs).
        runs = partition_runs(k, step_slots(backend))
        parts = list(
            await asyncio.gather(
                *(
                    step(
                        TRANSFORM,
                        f"{TRANSFORM.name}-{j}",
                        {
                            "input_dir": f"{_IN}/validate",
                            "partition": first,
                            "partitions": k,
                            **({"count": count} if count > 1 else {}),
                            "group_by": group_by,
                        },
                        validated_mount,
                    )
                    for j, (first, count) in enumerate(runs)
                )
            )
        )
        part_mounts = {str(_out(p)): f"{_IN}/parts/p{i}" for i, p in enumerate(parts)}

        # 4. aggregate: merges the partitions' statistics
        aggregated = await step(
            AGGREGATE,
            AGGREGATE.name,
            {"input_dir": f"{_IN}/parts", "group_by": group_by},
            part_mounts,
        )

        # 5. report: assembles the output folder
        await step(
            REPORT,
            REPORT.name,
            {"validate": f"{_IN}/validate", "aggregate": f"{_IN}/aggregate"},
            {**validated_mount, str(_out(aggregated)): f"{_IN}/aggregate"},
            final=out_dir,
        )

        outcomes.sort(key=lambda o: pipeline_order(o.name))
        summary = _summary(options, backend, outcomes, out_dir, group_by, facts)
        if summary["input_rows"] != summary["valid_rows"] + summary["quarantined_rows"]:
            raise PipelineFailed(
                "rows were lost: input_rows != valid_rows + quarantined_rows"
                f" ({summary['input_rows']} != {summary['valid_rows']} + {summary['quarantined_rows']})",
                step=REPORT.name,
                cause=None,
            )
        _write_json_atomically(out_dir / "summary.json", summary)
        await progress.flush()
        context = FlowRunContext.get()
        started = context.flow_run.start_time if context and context.flow_run else None
        # Three artifacts of their own keys, none read by another (the history is given this
        # run's record): written side by side, not one round trip after the other.
        await asyncio.gather(
            publish_summary(FLOW_NAME, summary, outcomes, run_name),
            publish_metrics(FLOW_NAME, summary),
            publish_history(
                FLOW_NAME, current=current_record(summary, run_name, started, "Completed")
            ),
        )
        logger.info(
            "%d rows in, %d valid, %d quarantined; results in %s",
            summary["input_rows"],
            summary["valid_rows"],
            summary["quarantined_rows"],
            out_dir,
        )
        if (
            options.summarize
        ):  # optional, last, never fails the run; summary.json then says what it did
            done = await summarize_results(manager, out_dir, backend, logger, settings)
            summary["summarize"] = done.as_summary()
            _write_json_atomically(out_dir / "summary.json", summary)
        return summary
    finally:
        # On a failing path the progress calls still in flight are waited for, their errors
        # never hiding the run's own (on the way to success they were flushed above).
        with contextlib.suppress(Exception):
            await progress.flush()


def _ui_url() -> str | None:
    """The run's V2 page in the Prefect UI (where charts render), when a server is configured.

    Without ``PREFECT_API_URL`` the run is on the embedded server, whose UI ends with the command;
    the console then prints the address the run will have under ``prefect server start``.
    """
    if not os.environ.get("PREFECT_API_URL") or not flow_run.id:
        return None
    base = PREFECT_UI_URL.value()
    # a URL with credentials keeps them out
    return redact_url(flow_run_ui_url(str(base), flow_run.id)) if base else None


def _summary(
    options: PipelineOptions,
    backend: str,
    outcomes: list[StepOutcome],
    output: Path,
    group_by: str | None,
    facts: dict[str, Any] | None,
) -> dict[str, Any]:
    """The content of ``summary.json``: the run's row counts and columns (``facts``, the validate
    step's ``validate.json``, which the report step copies; None before it), the run and its steps.

    The flow is the file's last writer; it never reads the file back.
    """
    facts = facts or {}
    return {
        "input_rows": facts.get("input_rows"),
        "valid_rows": facts.get("valid_rows"),
        "quarantined_rows": facts.get("quarantined_rows"),
        "backend": backend,
        "flow_run_id": str(flow_run.id) if flow_run.id else None,
        "flow_run_url": _ui_url(),
        "trace_id": tracing.current_trace_id(),
        "trace_url": tracing.trace_link(tracing.current_trace_id()),
        "group_by": group_by,
        "group_by_reason": options.group_by_reason,
        "input": str(Path(options.input).resolve()) if options.input else None,
        "generated": None if options.input else {"rows": options.rows, "seed": options.seed},
        "columns": facts.get("columns"),
        "formats": facts.get("formats", {}),
        "fallbacks": facts.get("fallbacks", []),
        "summarize": None,
        "steps": [o.as_summary() for o in sorted(outcomes, key=lambda o: pipeline_order(o.name))],
        **{key: str(output / entry) for key, entry in RESULTS.items()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
