"""The shipped pipeline agents render exactly the steps the data pipeline runs today."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from adapters.contract import Mount, StepSpec
from agents import AgentManager

IN, OUT = "/aiop/in", "/aiop/out"
STEPS = ["python", "-m", "flows.steps"]


@pytest.fixture(scope="module")
def manager() -> AgentManager:
    return AgentManager.from_paths([Path(__file__).resolve().parents[2] / "agents" / "definitions"])


# (capability, params, the args flows/pipeline.py builds for the same step)
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
        "transform",
        {"input": f"{IN}/validate/valid.parquet", "partition": 1, "partitions": 4, "output": OUT},
        [
            *STEPS, "transform", "--input", f"{IN}/validate/valid.parquet",
            "--partition", "1", "--partitions", "4", "--output", OUT,
        ],
    ),
    (
        "aggregate",
        {"input_dir": f"{IN}/parts", "group_by": "category", "output": OUT},
        [*STEPS, "aggregate", "--input-dir", f"{IN}/parts", "--group-by", "category", "--output", OUT],
    ),
    (
        "report",
        {"validate": f"{IN}/validate", "aggregate": f"{IN}/aggregate", "parts": f"{IN}/parts", "output": OUT},
        [
            *STEPS, "report", "--validate", f"{IN}/validate", "--aggregate", f"{IN}/aggregate",
            "--parts", f"{IN}/parts", "--output", OUT,
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
def test_the_step_spec_equals_the_one_the_pipeline_builds_today(
    manager: AgentManager,
    tmp_path: Path,
    capability: str,
    params: dict[str, Any],
    expected: list[str],
) -> None:
    """Same spec, same cache key, same content-addressed output folder: outputs stay identical."""
    pipeline = pytest.importorskip("flows.pipeline")
    if not hasattr(pipeline, "_step"):
        pytest.skip("flows.pipeline builds its steps through the agents now")
    data = tmp_path / "input.csv"
    data.write_text("a,b\n1,2\n")
    mounts = {str(data): f"{IN}/input.csv"}
    work = tmp_path / "work"
    today: StepSpec = pipeline._step(capability, expected[3:-2], mounts, work)

    def content_addressed(spec: StepSpec) -> StepSpec:  # what the pipeline passes as `prepare`
        key = pipeline.step_cache_key_for(spec)
        return spec.model_copy(update={"outputs": {OUT: str(work / f"{capability}-{key}")}})

    for agent in manager.rank(capability):
        spec = agent.to_step_spec(
            params,
            name=capability,
            mounts={str(pipeline._STEPS_DIR): Mount(target="/aiop/src/flows/steps"), **mounts},
            env={"AIOP_STEP_REQUIREMENTS": f"duckdb=={version('duckdb')}"},
        )
        if agent.name == "transform-duckdb-lowmem":  # same step, one DuckDB thread
            spec = spec.model_copy(
                update={"env": {k: v for k, v in spec.env.items() if k != "AIOP_DUCKDB_THREADS"}}
            )
        assert content_addressed(spec).model_dump() == today.model_dump(), agent.name
