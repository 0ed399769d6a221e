"""The flow pins the requirements an agent declares to the versions it runs with itself."""

from __future__ import annotations

from importlib.metadata import version

from flows.data_pipeline.flow import pinned


def test_an_unpinned_requirement_installed_here_gets_this_version() -> None:
    assert pinned(["duckdb"]) == [f"duckdb=={version('duckdb')}"]


def test_a_pinned_or_unknown_requirement_is_kept_as_declared() -> None:
    declared = ["duckdb==1.1.0", "pyarrow>=15", "no-such-package-here", "duckdb[all]"]
    assert pinned(declared) == declared
