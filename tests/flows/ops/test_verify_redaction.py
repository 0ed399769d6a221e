"""``aiop verify`` shows the Prefect API URL without the credentials in it."""

from __future__ import annotations

import pytest

from flows.cli import main

PASSWORD = "pw-s3cret-9f2"


def test_verify_shows_the_prefect_api_url_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", f"http://admin:{PASSWORD}@127.0.0.1:1/api")
    assert main(["verify", "--no-docs"]) == 1
    out = capsys.readouterr().out
    assert "http://admin:***@127.0.0.1:1/api does not answer" in out
    assert PASSWORD not in out
