"""The pipeline's steps, declared once: which step programs of this package the data pipeline runs,
in order, and what each one reports.

Everything else that names the steps is derived from :data:`PIPELINE_STEPS`: the flow's progress
total (:func:`step_count`) and step order (:func:`pipeline_order`), the rows each step's span
and the run's history show (:attr:`PipelineStep.reports`), the throughput column of the run's
artifact (:attr:`PipelineStep.rows_basis`), the result entries the summary, the artifact and the
command line name (:data:`RESULTS`), the steps the drill aims its faults at and the ones the
benchmarks time. Adding a step is
one entry here, its program (``flows/steps/<name>.py`` and its branch in ``__main__``), an agent
that has its capability (``agents/definitions``) and its call in ``flows/data_pipeline/flow.py``
(its inputs and mounts).

Standard library only, like every step module: the pipeline's side imports it, the step processes
never need it.

Examples:
    >>> [s.name for s in PIPELINE_STEPS]
    ['ingest', 'validate', 'transform', 'aggregate', 'report']
    >>> step_count(partitions=3), step_names(2)
    (7, ['ingest', 'validate', 'transform-0', 'transform-1', 'aggregate', 'report'])
    >>> declared("transform-12").name, pipeline_order("transform-12")
    ('transform', (2, 12))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "AGGREGATE",
    "INGEST",
    "PIPELINE_STEPS",
    "REPORT",
    "RESULTS",
    "TRANSFORM",
    "VALIDATE",
    "PipelineStep",
    "declared",
    "pipeline_order",
    "step_count",
    "step_names",
]


@dataclass(frozen=True, kw_only=True)
class PipelineStep:
    """One step of the pipeline.

    Attributes:
        name: The step's name (``python -m flows.steps <name>``); a partitioned step's runs are
            named ``<name>-<i>``.
        capability: What an agent must be able to do to run it (``agents/definitions``).
        partitioned: Runs once per partition, in parallel.
        reports: Row counts it writes into ``<name>.json`` in its output folder: the name its
            span and the history give a count (``in``, ``out``, ``quarantined``) -> its key there.
        rows_basis: The summary field that counts the rows it works through (its throughput).
        results: Entries it writes into the run's output folder: summary key -> entry name.
    """

    name: str
    capability: str
    partitioned: bool = False
    reports: Mapping[str, str] = field(default_factory=dict)
    rows_basis: str
    results: Mapping[str, str] = field(default_factory=dict)

    @property
    def facts_file(self) -> str:
        """The file in its output folder that holds its counts."""
        return f"{self.name}.json"


INGEST = PipelineStep(
    name="ingest",
    capability="ingest",
    reports=MappingProxyType({"out": "rows"}),
    rows_basis="input_rows",
)
VALIDATE = PipelineStep(
    name="validate",
    capability="validate",
    reports=MappingProxyType(
        {"in": "input_rows", "out": "valid_rows", "quarantined": "quarantined_rows"}
    ),
    rows_basis="input_rows",
)
TRANSFORM = PipelineStep(
    name="transform",
    capability="transform",
    partitioned=True,
    reports=MappingProxyType({"out": "rows"}),
    rows_basis="valid_rows",
)
AGGREGATE = PipelineStep(
    name="aggregate",
    capability="aggregate",
    reports=MappingProxyType({"out": "groups"}),
    rows_basis="valid_rows",
)
REPORT = PipelineStep(
    name="report",
    capability="report",
    rows_basis="valid_rows",
    results=MappingProxyType(
        {"aggregates": "aggregates.csv", "quarantine": "quarantine.csv", "data": "data"}
    ),
)

#: The pipeline's steps in the order they run.
PIPELINE_STEPS: tuple[PipelineStep, ...] = (INGEST, VALIDATE, TRANSFORM, AGGREGATE, REPORT)

#: The run's result entries (summary key -> entry of the output folder), in the order shown.
RESULTS: Mapping[str, str] = MappingProxyType(
    {key: entry for step in PIPELINE_STEPS for key, entry in step.results.items()}
)


def step_count(partitions: int) -> int:
    """How many step runs a pipeline run has whose partitioned step runs ``partitions`` times
    (once per partition, or once per run of partitions when they outnumber the step slots)."""
    return sum(partitions if step.partitioned else 1 for step in PIPELINE_STEPS)


def step_names(partitions: int) -> list[str]:
    """The names of a run's steps, in pipeline order."""
    names: list[str] = []
    for step in PIPELINE_STEPS:
        if step.partitioned:
            names += [f"{step.name}-{i}" for i in range(partitions)]
        else:
            names.append(step.name)
    return names


def declared(step_name: str) -> PipelineStep | None:
    """The declared step a run's step name belongs to (``transform-3`` -> ``transform``)."""
    stage, _, index = step_name.partition("-")
    for step in PIPELINE_STEPS:
        if step_name == step.name or (step.partitioned and stage == step.name and index.isdigit()):
            return step
    return None


def pipeline_order(step_name: str) -> tuple[int, int]:
    """Pipeline order (partitions by number), whatever order parallel steps finished in; names
    the pipeline does not declare sort last."""
    step = declared(step_name)
    index = step_name.partition("-")[2]
    rank = len(PIPELINE_STEPS) if step is None else PIPELINE_STEPS.index(step)
    return rank, int(index) if index.isdigit() else 0
