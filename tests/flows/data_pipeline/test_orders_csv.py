"""A real CSV of orders through the main job (``python -m flows.data_pipeline``).

``fixtures/orders.csv`` is an export as people make them: a UTF-8 BOM, CRLF line ends, quoted
``"Last, First"`` names, ``N/A`` for missing values, US dates (``03/15/2024``), money with a currency
sign (``$42.00``) and with thousands separators (``"1,200.00"``), and two text columns that could be
grouped by. The run used to execute ingest and validate, then stop with exit 2 ("cannot tell which
column to group by") and a Failed run in the UI, with the money and date columns silently strings.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
ORDERS = Path(__file__).parents[1] / "fixtures" / "orders.csv"
SUGGESTED = [
    ("order_date", "order_date: date format=%m/%d/%Y"),
    ("unit_price", "unit_price: float thousands=, currency=$"),
    ("amount", "amount: float thousands=,"),
]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIOP_BACKEND": "local"}
    return subprocess.run(
        [sys.executable, "-m", "flows.data_pipeline", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


async def _runs_with_input(path: Path) -> list[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = await client.read_flow_runs(limit=200)
    return [r.name for r in runs if r.parameters.get("input") == str(path)]


def test_a_file_that_does_not_name_its_group_by_is_refused_before_any_run(
    prefect_api_url: str, tmp_path: Path
) -> None:
    src = tmp_path / "orders.csv"
    shutil.copyfile(ORDERS, src)
    done = _cli("--input", str(src), "--output", str(tmp_path / "o"), "--work-dir",
                str(tmp_path / "w"))  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cannot tell which column to group by: 'region', 'status'" in done.stderr
    assert "--group-by region" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == "" and not (tmp_path / "w").exists()  # no step ran
    assert asyncio.run(_runs_with_input(src)) == []  # and no flow run was created


def _money(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", ""))


def test_text_columns_are_named_with_the_schema_line_that_types_them(
    prefect_api_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    done = _cli("--input", str(ORDERS), "--group-by", "region", "--output", str(out),
                "--work-dir", str(tmp_path / "w"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [(f["column"], f["schema"]) for f in summary["fallbacks"]] == SUGGESTED
    assert summary["columns"]["unit_price"] == "string"
    assert "written with the currency sign '$'" in summary["fallbacks"][1]["why"]
    for _, line in SUGGESTED:
        assert f"To type it, add to --schema: {line}\n" in done.stdout

    # The suggested lines, as written, type every value; none changes on the way.
    schema = tmp_path / "orders.yaml"
    schema.write_text("".join(line + "\n" for _, line in SUGGESTED), encoding="utf-8")
    out = tmp_path / "typed"
    done = _cli("--input", str(ORDERS), "--group-by", "region", "--schema", str(schema),
                "--output", str(out), "--work-dir", str(tmp_path / "w"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["fallbacks"] == [] and summary["quarantined_rows"] == 0
    assert summary["valid_rows"] == summary["input_rows"] == 240
    assert {c: summary["columns"][c] for c, _ in SUGGESTED} == {
        "order_date": "date", "unit_price": "float", "amount": "float",
    }  # fmt: skip
    assert summary["formats"]["unit_price"] == "thousands=, currency=$"
    assert "Note:" not in done.stdout

    expected: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    with ORDERS.open(newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            region = "" if row["region"] == "N/A" else row["region"]
            for col in ("unit_price", "amount"):
                if row[col] != "N/A":
                    expected[region][col].append(_money(row[col]))
    with (out / "aggregates.csv").open(newline="", encoding="utf-8") as fh:
        table = {r["region"]: r for r in csv.DictReader(fh)}
    assert table.keys() == expected.keys()
    for region, columns in expected.items():
        for col, values in columns.items():
            low, high = table[region][f"{col}_min"], table[region][f"{col}_max"]
            assert (Decimal(low), Decimal(high)) == (min(values), max(values)), (region, col)
