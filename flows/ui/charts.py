"""Mermaid charts that stay legible in the Prefect UI: a step timeline (gantt) and bar charts.

The Prefect UI (V2) renders mermaid in markdown artifacts with its own theme; left alone, a gantt
is drawn as wide as the window and then shrunk into the artifact column (labels of about 6 px),
with dark text on the dark code-block background, and bar charts use a pale cream palette. Each
chart here carries its own mermaid configuration in a front matter block (``config:``), which the
UI merges over its theme:

* a fixed drawing width close to the artifact column (:data:`WIDTH`), so text keeps its size;
* a gantt coloured for the dark code-block background it is drawn on (the UI's strict security
  level drops ``themeCSS``, so a gantt cannot paint its own background): light bars with dark
  labels on dark rows, light text around them;
* bar charts on their own white background, blue bars and a value axis that starts at 0.

Examples:
    >>> print(bar_chart("Step durations (s)", ["ingest"], [1.5], "seconds").splitlines()[4])
    xychart-beta
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

__all__ = ["WIDTH", "bar_chart", "gantt", "nice_ceiling", "plain_number", "tick_interval"]

#: Drawing width in pixels: the artifact column of the Prefect UI at a 1400 px wide window is ~660 px.
WIDTH = 640

# Colours (Tailwind palette). Gantt bars are light with dark labels, drawn on dark rows: labels
# inside a bar have a contrast ratio of 6 or more, bars against their row 3 or more, and labels
# outside bars are light on the dark code block. Bar charts: blue bars on white.
_BLUE = "#1d4ed8"
_BAR_DONE = "#60a5fa"  # completed
_BAR_CACHED = "#cbd5e1"  # cached
_BAR_FAILED = "#f87171"  # failed, crashed, cancelled
_ROW = "#1e293b"  # the rows the bars sit on, close to the UI's code-block background
_LIGHT = "#f1f5f9"  # text drawn on the dark code block
_INK = "#0f172a"  # text drawn on light bars or on white

_GANTT_THEME = {
    "fontSize": "14px",
    "titleColor": _LIGHT,
    "textColor": _LIGHT,
    "gridColor": "#94a3b8",
    "sectionBkgColor": _ROW,
    "altSectionBkgColor": _ROW,
    "sectionBkgColor2": _ROW,
    "taskBkgColor": _BAR_DONE,
    "taskBorderColor": "#bfdbfe",
    "taskTextColor": _INK,
    "taskTextLightColor": _INK,
    "taskTextDarkColor": _INK,
    "taskTextOutsideColor": _LIGHT,
    "doneTaskBkgColor": _BAR_CACHED,
    "doneTaskBorderColor": "#f1f5f9",
    "critBkgColor": _BAR_FAILED,
    "critBorderColor": "#fecaca",
    "activeTaskBkgColor": _BAR_DONE,
    "activeTaskBorderColor": "#bfdbfe",
}

_XY_THEME = {
    "backgroundColor": "#ffffff",
    "titleColor": _INK,
    "xAxisLabelColor": _INK,
    "xAxisTitleColor": _INK,
    "xAxisTickColor": _INK,
    "xAxisLineColor": _INK,
    "yAxisLabelColor": _INK,
    "yAxisTitleColor": _INK,
    "yAxisTickColor": _INK,
    "yAxisLineColor": _INK,
    "plotColorPalette": _BLUE,
}

#: Gantt axis steps up to a day, the first that gives at most 8 ticks is used; longer spans tick
#: every 1, 2 or 5 x 10^k weeks (mermaid counts weeks from a fixed origin, so any multiple works,
#: while seconds, minutes, hours and days are multiples within the minute, hour, day and month).
_TICKS = (
    (1, "second"),
    (2, "second"),
    (5, "second"),
    (10, "second"),
    (15, "second"),
    (30, "second"),
    (1, "minute"),
    (2, "minute"),
    (5, "minute"),
    (10, "minute"),
    (15, "minute"),
    (30, "minute"),
    (1, "hour"),
    (2, "hour"),
    (3, "hour"),
    (6, "hour"),
    (12, "hour"),
    (1, "day"),
)
_UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
_MAX_TICKS = 8


def _fence(config: dict[str, Any], body: Sequence[str]) -> str:
    """A mermaid code block whose front matter carries ``config`` (JSON is valid YAML)."""
    front = ["---", "config: " + json.dumps(config, separators=(", ", ": ")), "---"]
    return "\n".join(["```mermaid", *front, *body, "```"])


def plain_number(value: float, decimals: int | None = None) -> str:
    """``value`` as mermaid reads a number: plain decimal digits, never an exponent.

    ``format(x, "g")`` writes ``1e+07`` from ten million on, which mermaid's chart grammars reject
    ("Syntax error in text"). With ``decimals``, exactly that many digits after the point;
    without, as few as keep the value (none for a whole number).

    Examples:
        >>> plain_number(1e7), plain_number(2.5e-3), plain_number(1e12 / 3, 0), plain_number(0.5, 3)
        ('10000000', '0.0025', '333333333333', '0.500')
    """
    if decimals is not None:
        return f"{value:.{decimals}f}"  # the f format never writes an exponent
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def tick_interval(span_s: float) -> str:
    """A gantt ``tickInterval`` that puts at most 8 ticks on an axis of ``span_s`` seconds.

    Examples:
        >>> tick_interval(17.4), tick_interval(300), tick_interval(0.2), tick_interval(40 * 86400)
        ('5second', '1minute', '1second', '1week')
    """
    for count, unit in _TICKS:
        if span_s / (count * _UNIT_S[unit]) <= _MAX_TICKS:
            return f"{count}{unit}"
    weeks = span_s / _UNIT_S["week"]
    power = 1
    while True:
        for step in (1, 2, 5):
            if weeks / (step * power) <= _MAX_TICKS:
                return f"{step * power}week"
        power *= 10


#: The timeline's time unit by span: (longest span in seconds, seconds per unit, unit name).
_GANTT_UNITS = ((600.0, 1, "s"), (600.0 * 60, 60, "min"), (math.inf, 3600, "h"))


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value`` (an axis maximum).

    Examples:
        >>> nice_ceiling(5.21), nice_ceiling(3057), nice_ceiling(0)
        (10.0, 5000.0, 1.0)
    """
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power  # pragma: no cover - the loop ends at 10 x power


def gantt(title: str, tasks: Sequence[tuple[str, str, int, int]]) -> str:
    """A timeline: ``tasks`` are ``(label, tag, start_ms, end_ms)``, tag ``""``, ``done`` or ``crit``.

    The axis counts seconds since the first step (minutes past 10 minutes, hours past 10 hours),
    and the title says which: mermaid draws times in the browser's time zone, so an axis of clock
    times (``%M:%S``) would be off by the zone's offset; the epoch seconds mermaid prints for
    ``%s`` are the same everywhere.

    Examples:
        >>> print(gantt("Steps", [("ingest", "", 0, 1500)]).splitlines()[-2])
            ingest :s0, 0, 1500
    """
    span_s = max((end for *_, end in tasks), default=0) / 1000
    per_unit, unit = next((per, name) for most, per, name in _GANTT_UNITS if span_s <= most)
    config = {
        "themeVariables": _GANTT_THEME,
        "gantt": {
            "useWidth": WIDTH,
            "barHeight": 26,
            "barGap": 8,
            "fontSize": 14,
            "sectionFontSize": 14,
            "topPadding": 44,
            "leftPadding": 24,
            "rightPadding": 16,
            "gridLineStartPadding": 34,
            "titleTopMargin": 22,
        },
    }
    body = [
        "gantt",
        f"    title {title} ({unit} since the first step)",
        "    dateFormat x",  # milliseconds: one per second of the axis unit
        "    axisFormat %s",
        f"    tickInterval {tick_interval(span_s / per_unit)}",
    ]
    for i, (label, tag, start, end) in enumerate(tasks):
        first, last = start // per_unit, max(start // per_unit + 1, end // per_unit)
        body.append(f"    {label} :{tag + ', ' if tag else ''}s{i}, {first}, {last}")
    return _fence(config, body)


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    value_title: str,
    *,
    decimals: int = 3,
    horizontal: bool = False,
) -> str:
    """A bar chart whose value axis starts at 0, on its own white background.

    Args:
        title: the chart's title.
        labels: one label per bar.
        values: one value per bar.
        value_title: the value axis's title (its unit).
        decimals: digits after the point of each value.
        horizontal: bars left to right, labels down the side (for long labels such as run names).
    """
    top = nice_ceiling(max(values, default=0.0))
    config = {
        "themeVariables": {"xyChart": _XY_THEME},
        "xyChart": {
            "width": WIDTH,
            "height": max(300, 40 * len(labels) + 120) if horizontal else 360,
            "titleFontSize": 18,
            "xAxis": {"labelFontSize": 14, "titleFontSize": 14},
            "yAxis": {"labelFontSize": 14, "titleFontSize": 14},
        },
    }
    body = [
        "xychart-beta horizontal" if horizontal else "xychart-beta",
        f'    title "{title}"',
        "    x-axis [" + ", ".join(json.dumps(label) for label in labels) + "]",
        f'    y-axis "{value_title}" 0 --> {plain_number(top)}',
        "    bar [" + ", ".join(plain_number(v, decimals) for v in values) + "]",
    ]
    return _fence(config, body)
