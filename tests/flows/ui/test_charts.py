"""Every number the platform writes into a mermaid chart is a plain decimal (no ``1e+07``).

Mermaid's xychart grammar reads numbers as digits with an optional point and fraction; an exponent
(``1e+07``, what ``format(x, "g")`` gives from 10 million on) is a syntax error, and the Prefect UI
then shows "Syntax error in text" instead of the chart. The browser renders the same charts in
tests/browser/test_chart_values.py.
"""

from __future__ import annotations

import re

import pytest

from adapters import StepResult
from flows.runtime.step_task import StepOutcome
from flows.ui.artifacts import render_summary
from flows.ui.charts import bar_chart, gantt, plain_number, tick_interval
from flows.ui.history import RunRecord, render_history

#: A mermaid body line's numbers: what the grammar accepts is digits, a point, digits.
_NUMBER = re.compile(r"(?<![\w.\"-])-?\d[\d.eE+-]*")
_PLAIN = re.compile(r"^-?\d+(\.\d+)?$")

SCALES = [0, 1, 7, 999, 10**6, 5 * 10**6, 10**7, 123_456_789, 10**9, 10**12]


def _numbers_in_charts(markdown: str) -> list[str]:
    """The numbers of every mermaid body line (front matter and titles left out)."""
    found: list[str] = []
    for block in re.findall(r"```mermaid\n(.*?)```", markdown, re.DOTALL):
        body = block.split("---\n", 2)[-1]
        for line in body.splitlines():
            if line.strip().startswith(("title", "dateFormat", "axisFormat", "tickInterval")):
                continue
            line = re.sub(r'"[^"]*"', '""', line)  # labels are text, not numbers
            found += _NUMBER.findall(line)
    return found


def _outcome(name: str, start: float, duration: float) -> StepOutcome:
    result = StepResult(
        step=name, exit_code=0, stdout="", stderr="", duration_s=duration, backend="local"
    )
    return StepOutcome(name, "Completed", 1, duration, result=result, started_at=start)


@pytest.mark.parametrize("value", [*SCALES, 0.5, 2.5e-3, 1e15, 123456789.125])
def test_plain_number_never_writes_an_exponent(value: float) -> None:
    text = plain_number(value)
    assert _PLAIN.match(text), text
    assert float(text) == pytest.approx(value, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("rows", SCALES)
def test_summary_charts_write_plain_decimals_at_every_scale(rows: int) -> None:
    summary = {"input_rows": rows, "valid_rows": rows, "quarantined_rows": 0, "backend": "local"}
    outcomes = [_outcome("ingest", 0.0, 0.1), _outcome("validate", 0.1, 1.0)]
    numbers = _numbers_in_charts(render_summary(summary, outcomes, "run"))
    assert numbers, "expected numbers in the charts"
    assert all(_PLAIN.match(n) for n in numbers), numbers


@pytest.mark.parametrize("seconds", [0.0, 0.004, 3.5, 10**7, 10**12])
def test_duration_charts_write_plain_decimals(seconds: float) -> None:
    records = [RunRecord("a-run", "Completed", "", seconds, 1, 1, 0, 0, "local")]
    chart = bar_chart("t", ["a"], [seconds], "s")
    for text in (render_history(records), chart):
        numbers = _numbers_in_charts(text)
        assert numbers and all(_PLAIN.match(n) for n in numbers), numbers


def test_the_rows_per_second_axis_of_a_million_rows_is_plain() -> None:
    # The README's --rows 1000000: ingest at ~7 million rows/s gave "0 --> 1e+07".
    chart = bar_chart("Rows per second", ["ingest"], [7_000_000.0], "rows/s", decimals=0)
    assert 'y-axis "rows/s" 0 --> 10000000' in chart


def test_gantt_positions_are_whole_numbers_in_the_unit_its_title_names() -> None:
    short = gantt("Steps", [("ingest", "", 0, 1500), ("validate", "", 1500, 1501)])
    assert "title Steps (s since the first step)" in short and "ingest :s0, 0, 1500" in short
    hours = gantt("Steps", [("ingest", "", 0, 10**15)])  # 10^12 s
    assert "title Steps (h since the first step)" in hours
    assert "ingest :s0, 0, 277777777777" in hours  # a millisecond of the axis per hour
    minutes = gantt("Steps", [("ingest", "", 0, 3_600_000)])
    assert "(min since the first step)" in minutes and "ingest :s0, 0, 60000" in minutes


@pytest.mark.parametrize(
    ("span_s", "most"),
    [(0.0, 8), (17.4, 8), (3600, 8), (8 * 3600 + 1, 8), (40 * 86400, 8), (10**9, 8)],
)
def test_tick_interval_keeps_a_handful_of_ticks_at_any_span(span_s: float, most: int) -> None:
    interval = tick_interval(span_s)
    found = re.fullmatch(r"(\d+)(second|minute|hour|day|week)", interval)
    assert found, interval
    count, unit = int(found[1]), found[2]
    assert (
        span_s
        / (count * {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}[unit])
        <= most
    )
    # Mermaid ticks seconds, minutes, hours and days at multiples within the next unit up.
    assert unit == "week" or count <= {"second": 30, "minute": 30, "hour": 12, "day": 1}[unit]
