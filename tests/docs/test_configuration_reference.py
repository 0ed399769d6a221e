"""The configuration reference is generated from the settings object and agrees with it."""

from __future__ import annotations

from pathlib import Path

from adapters.settings import BEGIN_MARK, END_MARK, setting_variables, with_reference

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "configuration.md"


def test_the_page_holds_the_table_generated_from_the_settings() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert with_reference(page) == page, (
        "docs/reference/configuration.md is out of date: run"
        " aiop settings --write docs/reference/configuration.md"
    )


def test_every_setting_has_a_row_with_its_type_default_and_meaning() -> None:
    page = PAGE.read_text(encoding="utf-8")
    table = page[page.index(BEGIN_MARK) : page.index(END_MARK)]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(setting_variables())
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert len(cells) == 4 and all(cells), row
    assert "`AIOP_DEBUG`" in table and "`AIOP_DAGGER_PROVISION_TIMEOUT_S`" in table
    # the tracing settings are read from the standard OpenTelemetry variables, under their names
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME",
                 "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_HEADERS"):  # fmt: skip
        assert f"| `{name}` |" in table


def test_a_changed_description_makes_the_page_disagree() -> None:
    page = PAGE.read_text(encoding="utf-8")
    stale = page.replace("Consecutive infrastructure failures", "Failures", 1)
    assert stale != page and with_reference(stale) == page


def test_the_page_shows_each_numeric_settings_bounds() -> None:
    page = PAGE.read_text(encoding="utf-8")
    rows = {line.split("`")[1]: line for line in page.splitlines() if line.startswith("| `AIOP_")}
    assert "int, from 1 to 51" in rows["AIOP_RETRY_ATTEMPTS"]
    assert "float, from 0 to 86400" in rows["AIOP_RETRY_BACKOFF_S"]
    assert "above 0, at most 86400" in rows["AIOP_BREAKER_RESET_TIMEOUT"]
