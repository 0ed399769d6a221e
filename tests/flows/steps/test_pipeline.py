"""The pipeline's steps, declared once, and what is derived from the declaration."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agents import AgentManager
from flows.steps.__main__ import build_parser
from flows.steps.pipeline import (
    PIPELINE_STEPS,
    RESULTS,
    declared,
    pipeline_order,
    step_count,
    step_names,
)

DEFINITIONS = Path(__file__).resolve().parents[3] / "agents" / "definitions"


def test_the_progress_total_counts_each_partition() -> None:
    assert [step_count(k) for k in (1, 2, 8)] == [5, 6, 12]
    assert len(step_names(8)) == step_count(8)


@pytest.mark.parametrize(
    ("name", "stage", "order"),
    [
        ("ingest", "ingest", (0, 0)),
        ("transform-10", "transform", (2, 10)),
        ("transform-2", "transform", (2, 2)),
        ("report", "report", (4, 0)),
        ("summarize", None, (5, 0)),
        ("validate-1", None, (5, 1)),
    ],
)
def test_a_run_step_name_maps_to_its_declared_step_and_order(
    name: str, stage: str | None, order: tuple[int, int]
) -> None:
    step = declared(name)
    assert (step.name if step else None) == stage and pipeline_order(name) == order


def test_parallel_steps_sort_by_partition_number_not_text() -> None:
    names = ["report", "transform-10", "ingest", "transform-9", "aggregate", "validate"]
    assert sorted(names, key=pipeline_order) == [
        "ingest",
        "validate",
        "transform-9",
        "transform-10",
        "aggregate",
        "report",
    ]


def test_every_declared_step_is_a_step_program_and_has_an_agent() -> None:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    manager = AgentManager.from_paths([DEFINITIONS])
    for step in PIPELINE_STEPS:
        assert step.name in commands.choices
        assert manager.rank(step.capability), step.capability


def test_the_result_entries_are_the_report_steps() -> None:
    assert dict(RESULTS) == {
        "aggregates": "aggregates.csv",
        "quarantine": "quarantine.csv",
        "data": "data",
    }
