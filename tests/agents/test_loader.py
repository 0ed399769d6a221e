"""Loading folders of definitions: a broken file never stops the others, AIOP_AGENTS_PATH adds
folders, duplicate names are reported naming both files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.settings import Settings
from agents import SHIPPED_DEFINITIONS, AgentManager, default_paths, load_definitions
from tests.agents.conftest import minimal, write_definition


def test_a_broken_definition_is_reported_and_the_others_still_load(
    definitions: Callable[..., Path],
) -> None:
    folder = definitions(minimal(name="good-one"), minimal(name="good-two"))
    write_definition(folder, "name: [broken\n", file="broken.yaml")
    write_definition(folder, minimal(name="bad", kind="robot"), file="bad.yaml")
    agents, problems = load_definitions([folder])
    assert [a.name for a in agents] == ["good-one", "good-two"]
    assert [p.file.name for p in problems] == ["bad.yaml", "broken.yaml"]
    assert all(str(p).startswith(str(p.file)) for p in problems)


def test_only_yaml_files_are_read_in_name_order(definitions: Callable[..., Path]) -> None:
    folder = definitions(minimal(name="b"), minimal(name="a"))
    (folder / "notes.txt").write_text("not a definition")
    write_definition(folder, minimal(name="c"), file="c.yml")
    agents, problems = load_definitions([folder])
    assert [a.name for a in agents] == ["a", "b", "c"] and problems == []


def test_a_duplicate_name_keeps_the_first_and_names_both_files(tmp_path: Path) -> None:
    first = write_definition(tmp_path / "one", minimal(name="twin"))
    second = write_definition(tmp_path / "two", minimal(name="twin", description="Other."))
    agents, problems = load_definitions([tmp_path / "one", tmp_path / "two"])
    assert [a.source for a in agents] == [first]
    (problem,) = problems
    assert problem.file == second
    assert f"already defined in {first}" in str(problem) and "field 'name'" in str(problem)


def test_a_missing_folder_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    agents, problems = load_definitions([SHIPPED_DEFINITIONS, tmp_path / "nope"])
    assert agents and len(problems) == 1
    assert "no such folder or file" in str(problems[0]) and "AIOP_AGENTS_PATH" in str(problems[0])


def test_the_agents_path_setting_adds_folders_after_the_shipped_ones(tmp_path: Path) -> None:
    write_definition(tmp_path / "x", minimal(name="extra-x"))
    write_definition(tmp_path / "y", minimal(name="extra-y"))
    settings = Settings(agents_path=f"{tmp_path / 'x'}{os.pathsep}{os.pathsep}{tmp_path / 'y'}")
    assert default_paths(settings.agent_paths()) == [
        SHIPPED_DEFINITIONS,
        tmp_path / "x",
        tmp_path / "y",
    ]
    assert default_paths() == [SHIPPED_DEFINITIONS]
    manager = AgentManager.from_settings(settings)
    names = [a.name for a in manager.agents()]
    assert names[-2:] == ["extra-x", "extra-y"] and "validate-duckdb" in names
    assert manager.problems == []


def test_the_shipped_definitions_are_all_valid() -> None:
    agents, problems = load_definitions([SHIPPED_DEFINITIONS])
    assert problems == []
    assert {a.name for a in agents} == {
        "ingest-duckdb",
        "validate-duckdb",
        "transform-duckdb",
        "transform-duckdb-lowmem",
        "aggregate-duckdb",
        "report-files",
        "summarize-llm",
    }


def test_definitions_read_by_libyaml_are_what_the_pure_loader_reads() -> None:
    import yaml

    from agents import loader

    assert loader._FAST_LOADER is not None  # PyYAML's wheels are built with libyaml
    for path in sorted(loader.SHIPPED_DEFINITIONS.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert loader._parse(text) == yaml.safe_load(text), path.name
    # A file libyaml refuses is refused in the pure loader's words, with its line.
    broken = "name: a\n  command: [unclosed\n"
    with pytest.raises(yaml.YAMLError) as caught:
        loader._parse(broken)
    with pytest.raises(yaml.YAMLError) as pure:
        yaml.safe_load(broken)
    assert str(caught.value) == str(pure.value)
