"""The shipped pipeline agents render exactly the steps the data pipeline runs today."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents import AgentManager

IN, OUT = "/aiop/in", "/aiop/out"
STEPS = ["python", "-m", "flows.steps"]


@pytest.fixture(scope="module")
def manager() -> AgentManager:
    return AgentManager.from_paths([Path(__file__).resolve().parents[2] / "agents" / "definitions"])


# (capability, params, the args flows/data_pipeline/flow.py builds for the same step)
CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "ingest",
        {"rows": 100_000, "seed": 42, "output": OUT},
        [*STEPS, "ingest", "--rows", "100000", "--seed", "42", "--output", OUT],
    ),
    (
        "ingest",
        {"input": f"{IN}/input.csv", "output": OUT},
        [*STEPS, "ingest", "--input", f"{IN}/input.csv", "--output", OUT],
    ),
    (
        "validate",
        {"input": f"{IN}/input.csv", "output": OUT},
        [*STEPS, "validate", "--input", f"{IN}/input.csv", "--output", OUT],
    ),
    (
        "validate",
        {"input": f"{IN}/input.csv", "schema": f"{IN}/schema.yaml", "output": OUT},
        [*STEPS, "validate", "--input", f"{IN}/input.csv", "--schema", f"{IN}/schema.yaml", "--output", OUT],
    ),
    (
        "validate",
        {"input": f"{IN}/input.csv", "partitions": 4, "output": OUT},
        [*STEPS, "validate", "--input", f"{IN}/input.csv", "--partitions", "4", "--output", OUT],
    ),
    (
        "transform",
        {"input_dir": f"{IN}/validate", "partition": 1, "partitions": 4, "group_by": "category",
         "output": OUT},
        [
            *STEPS, "transform", "--input-dir", f"{IN}/validate",
            "--partition", "1", "--partitions", "4", "--group-by=category", "--output", OUT,
        ],
    ),
    (
        "aggregate",
        {"input_dir": f"{IN}/parts", "group_by": "category", "output": OUT},
        [*STEPS, "aggregate", "--input-dir", f"{IN}/parts", "--group-by=category", "--output", OUT],
    ),
    (
        "report",
        {"validate": f"{IN}/validate", "aggregate": f"{IN}/aggregate", "output": OUT},
        [
            *STEPS, "report", "--validate", f"{IN}/validate", "--aggregate", f"{IN}/aggregate",
            "--output", OUT,
        ],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("capability", "params", "expected"), CASES)
def test_every_agent_for_a_pipeline_step_renders_its_exact_args(
    manager: AgentManager, capability: str, params: dict[str, Any], expected: list[str]
) -> None:
    for agent in manager.rank(capability):
        assert agent.render_args(params) == expected, agent.name


def test_ingest_refuses_rows_without_seed(manager: AgentManager) -> None:
    from adapters.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="rows, seed go together"):
        manager.get("ingest-duckdb").render_args({"rows": 10, "output": OUT})


def test_the_second_transform_agent_differs_only_in_threads_and_rank(manager: AgentManager) -> None:
    main, lowmem = manager.rank("transform")
    assert (main.name, lowmem.name) == ("transform-duckdb", "transform-duckdb-lowmem")
    assert lowmem.priority < main.priority
    assert lowmem.env == {**main.env, "AIOP_DUCKDB_THREADS": "1"}
    assert (lowmem.image, lowmem.command, lowmem.retry) == (main.image, main.command, main.retry)


@pytest.mark.parametrize(("capability", "params", "expected"), CASES)
def test_every_agent_for_a_pipeline_step_declares_what_its_step_imports(
    manager: AgentManager, capability: str, params: dict[str, Any], expected: list[str]
) -> None:
    # validate reads the --schema file with PyYAML; every step needs DuckDB
    wanted = ["duckdb", "pyyaml"] if capability == "validate" else ["duckdb"]
    for agent in manager.rank(capability):
        assert agent.to_step_spec(params).requirements == wanted, agent.name
