"""The throughput benchmark's verdicts: issue 13's goal 3, judged from one run's numbers."""

from __future__ import annotations

from typing import Any

import pytest

from flows.benchmarks.throughput import rows_of, time_split, validate_vs_ingest


def _size(rows: int, pipeline_s: float, script_s: float, peak: int, base_peak: int,
          validate_s: float, ingest_s: float) -> dict[str, Any]:  # fmt: skip
    return {
        "rows": rows,
        "ratio": pipeline_s / script_s,
        "generation_s": 99.0,  # the stand-alone generation: used only without the step's time
        "pipeline": {"seconds": pipeline_s, "rows_per_s": rows / pipeline_s, "peak_bytes": peak},
        "baseline": {"seconds": script_s, "rows_per_s": rows / script_s, "peak_bytes": base_peak},
        "steps": [{"name": "validate", "run_s": validate_s}],
        "pipeline_with_generation": {
            "seconds": 1.0,
            "steps": [{"name": "ingest", "run_s": ingest_s}],
        },
        "ratio_with_generation": 1.0,
        "baseline_agrees": True,
        "mismatches": [],
    }


@pytest.mark.parametrize(
    ("rows", "pipeline_s", "peak", "validate_s", "met"),
    [
        (1_000_000, 7.5, 100, 1.0, [True, True, True]),
        (1_000_000, 7.6, 100, 1.0, [False, True, True]),
        (10_000_000, 6.0, 100, 1.0, [True, True, True]),
        (10_000_000, 6.1, 101, 1.1, [False, False, False]),
        (100_000, 50.0, 999, 9.0, [None, None, None]),  # no target at --quick's size
    ],
)
def test_targets_by_size(
    rows: int, pipeline_s: float, peak: int, validate_s: float, met: list[bool | None]
) -> None:
    data = _size(rows, pipeline_s, 5.0, peak, 100, validate_s, 1.0)
    table = rows_of(rows, data)
    assert [row.met for row in table[:3]] == met


def test_validate_is_compared_with_the_ingest_step_per_million_rows() -> None:
    speed = validate_vs_ingest(_size(2_000_000, 1, 1, 1, 1, validate_s=4.0, ingest_s=2.0))
    assert speed == {"validate_s_per_million": 2.0, "ingest_s_per_million": 1.0, "ratio": 2.0}
    without = _size(1_000_000, 1, 1, 1, 1, validate_s=4.0, ingest_s=2.0)
    without["pipeline_with_generation"] = None  # --quick: the stand-alone generation instead
    assert validate_vs_ingest(without)["ingest_s_per_million"] == 99.0


def test_the_pipeline_time_is_split_into_validate_transform_other_steps_and_orchestration() -> None:
    data = _size(1_000_000, 4.0, 2.0, 1, 1, validate_s=2.0, ingest_s=1.0)
    data["steps"] += [
        {"name": "ingest", "run_s": 0.1},
        {"name": "transform-0", "run_s": 0.5},
        {"name": "transform-1", "run_s": 0.6},  # partitions run side by side: the slowest counts
        {"name": "aggregate", "run_s": 0.2},
        {"name": "report", "run_s": 0.2},
    ]
    split = time_split(data)
    assert split is not None
    assert split["validate_s"] == 2.0 and split["transform_s"] == 0.6
    assert split["other_steps_s"] == pytest.approx(0.5)
    assert split["orchestration_s"] == pytest.approx(0.9)
    table = {row.benchmark.strip(): row for row in rows_of(1_000_000, data)}
    assert table["validate step alone vs the script 1M"].comparison == "1.00x"
    assert table["rest of the pipeline 1M: transform, other steps, orchestration"].measured == (
        "0.6 + 0.5 + 0.9 s"
    )
