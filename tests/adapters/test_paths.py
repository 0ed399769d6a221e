"""Container paths rewritten to host paths for the local runner."""

from __future__ import annotations

import pytest

from adapters.paths import PathMap

PM = PathMap({"/aiop/in": "/data/in", "/aiop/out": "/s/out", "/aiop/in/special": "/sp"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/aiop/out", "/s/out"),
        ("/aiop/out/x.csv", "/s/out/x.csv"),
        ("--output=/aiop/out", "--output=/s/out"),
        ("/aiop/in:/aiop/out/lib", "/data/in:/s/out/lib"),
        ("open('/aiop/in/a.csv')", "open('/data/in/a.csv')"),
        ("/aiop/in/special/f", "/sp/f"),
        ("/aiop/output", "/aiop/output"),
        ("x/aiop/out", "x/aiop/out"),
        ("/aiop/inbox", "/aiop/inbox"),
        ("plain", "plain"),
    ],
)
def test_rewrites_only_at_path_boundaries_longest_first(value: str, expected: str) -> None:
    assert PM.rewrite(value) == expected


def test_host_path_is_none_outside_mapped_prefixes() -> None:
    assert PM.host_path("/etc/passwd") is None
    assert PM.host_path("/aiop/in/x") == "/data/in/x"


def test_empty_map_changes_nothing() -> None:
    assert PathMap({}).rewrite("/aiop/out") == "/aiop/out"
