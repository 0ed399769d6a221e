"""Fault plans: parsing, which attempts they hit, and what each fault kind does at the runner boundary."""

from __future__ import annotations

import pytest

from adapters import (
    EngineConnectionError,
    EngineUnavailableError,
    InvalidInputError,
    StepSpec,
    StepTimeoutError,
)
from adapters.chaos import EX_TEMPFAIL, ChaosRunner, parse_plan
from adapters.local_runner import LocalRunner

SPEC = StepSpec(
    name="transform-0", image="python:3.12-slim", args=["python", "-c", "print('real')"]
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestParse:
    def test_example_from_the_docs(self) -> None:
        plan = parse_plan("step=transform,kind=transient-exit,times=2;kind=engine-down,seconds=5")
        first, second = plan.faults
        assert (first.step, first.kind, first.times) == ("transform", "transient-exit", 2)
        assert (second.step, second.kind, second.seconds) == (None, "engine-down", 5.0)

    @pytest.mark.parametrize(
        ("spec", "hint"),
        [
            ("kind=boom", "is not one of"),
            ("kind=slow,when=now", "unknown key"),
            ("kind=slow,times=x", "whole number"),
            ("kind=slow,times=0", "positive"),
            ("kind", "not key=value"),
        ],
    )
    def test_bad_plans_name_the_fault_and_the_fix(self, spec: str, hint: str) -> None:
        with pytest.raises(InvalidInputError, match=hint) as info:
            parse_plan(spec, source="--chaos")
        assert "--chaos, fault 1" in str(info.value)


class TestHits:
    def test_step_prefix_matches_partitions_only(self) -> None:
        plan = parse_plan("step=transform,kind=slow,times=5")
        assert plan.take("transform-3") is not None and plan.take("transform") is not None
        assert plan.take("transformer") is None and plan.take("validate") is None

    def test_times_counts_attempts(self) -> None:
        plan = parse_plan("kind=permanent-exit,times=2")
        assert [plan.take("s") is not None for _ in range(3)] == [True, True, False]

    def test_engine_down_for_seconds_uses_the_clock(self) -> None:
        clock = FakeClock()
        plan = parse_plan("kind=engine-down,seconds=5")
        plan.clock = clock
        assert plan.take("a") is not None
        clock.now = 4.9
        assert plan.take("b") is not None
        clock.now = 5.0
        assert plan.take("c") is None


class TestInjection:
    @pytest.mark.parametrize(
        ("kind", "error"),
        [
            ("engine-down", EngineUnavailableError),
            ("engine-crash", EngineConnectionError),
            ("timeout", StepTimeoutError),
        ],
    )
    async def test_infrastructure_faults_raise_the_real_error_class(
        self, kind: str, error: type[Exception]
    ) -> None:
        with pytest.raises(error, match="chaos: injected"):
            await ChaosRunner(LocalRunner(), parse_plan(f"kind={kind}")).run(SPEC)

    async def test_exit_faults_are_results_and_the_next_attempt_is_real(self) -> None:
        runner = ChaosRunner(LocalRunner(), parse_plan("kind=transient-exit;kind=permanent-exit"))
        first, second, third = [await runner.run(SPEC, attempt=n) for n in (1, 2, 3)]
        assert (first.exit_code, second.exit_code, third.exit_code) == (EX_TEMPFAIL, 1, 0)
        assert third.stdout == "real\n"

    async def test_slow_delays_then_runs_for_real(self) -> None:
        lines: list[str] = []
        result = await ChaosRunner(LocalRunner(), parse_plan("kind=slow,seconds=0.05")).run(
            SPEC, on_line=lambda _s, line: lines.append(line)
        )
        assert result.ok and result.stdout == "real\n"
        assert any("chaos: injected kind=slow" in line for line in lines)
