"""The cache key: what it hashes, and that one step run fingerprints its inputs and computes its key
once (the task run, the cache lookup and the pipeline's output folder all use that one key)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

import flows.runtime.cache_key as cache_key_module
from adapters import StepSpec
from agents import AgentManager, AgentSpec
from flows.runtime.agent_run import run_agent
from flows.runtime.cache_key import StepKey, step_cache_key
from flows.runtime.step_task import StepOutcome, execute_step
from tests.agents.conftest import Breakers, minimal


def spec_of(code: str, **fields: Any) -> StepSpec:
    return StepSpec(name="s", image="python:3.12-slim", args=["python", "-c", code], **fields)


class TestCacheKey:
    def test_same_spec_same_key(self, tmp_path: Path) -> None:
        (tmp_path / "in.csv").write_text("a\n1\n")
        spec = spec_of("pass", mounts={str(tmp_path / "in.csv"): "/in.csv"})
        assert step_cache_key(spec) == step_cache_key(spec)

    def test_changed_input_changes_the_key(self, tmp_path: Path) -> None:
        data = tmp_path / "in.csv"
        data.write_text("a\n1\n")
        spec = spec_of("pass", mounts={str(data): "/in.csv"})
        before = step_cache_key(spec)
        data.write_text("a\n1\n2\n")
        assert step_cache_key(spec) != before

    def test_bytecode_does_not_change_the_key(self, tmp_path: Path) -> None:
        (tmp_path / "m.py").write_text("x = 1\n")
        spec = spec_of("pass", mounts={str(tmp_path): "/src"})
        before = step_cache_key(spec)
        (tmp_path / "__pycache__").mkdir()
        (tmp_path / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\x00")
        assert step_cache_key(spec) == before

    def test_secret_changes_the_key_but_never_appears_in_it(self) -> None:
        one = step_cache_key(spec_of("pass", secrets={"T": "hunter2"}))
        two = step_cache_key(spec_of("pass", secrets={"T": "other"}))
        assert one != two and one is not None and "hunter2" not in one

    def test_a_changed_output_destination_changes_the_key_without_walking_again(
        self, tmp_path: Path
    ) -> None:
        (tmp_path / "in").mkdir()
        spec = spec_of("pass", mounts={str(tmp_path / "in"): "/in"})
        gathered = StepKey(spec)
        moved = spec.model_copy(update={"outputs": {"/out": str(tmp_path / "out")}})
        assert gathered.of(spec) == step_cache_key(spec)
        assert gathered.of(moved) == step_cache_key(moved) != gathered.of(spec)


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many times each host path was fingerprinted (walked for names, sizes and times)."""
    counts: dict[str, int] = {}
    walk = cache_key_module.fingerprint

    def counted(path: Path) -> Iterator[str]:
        counts[str(path)] = counts.get(str(path), 0) + 1
        return walk(path)

    monkeypatch.setattr(cache_key_module, "fingerprint", counted)
    return counts


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every spec whose key was computed, once per computation."""
    computed: list[str] = []
    of = StepKey.of

    def counted(self: StepKey, spec: StepSpec) -> str:
        computed.append(spec.name)
        return of(self, spec)

    monkeypatch.setattr(StepKey, "of", counted)
    return computed


@pytest.mark.prefect
class TestComputedOnce:
    async def test_a_step_run_fingerprints_its_inputs_once_and_computes_its_key_once(
        self, prefect_api_url: str, tmp_path: Path, walks: dict[str, int], keys: list[str]
    ) -> None:
        data = tmp_path / "in"
        data.mkdir()
        for i in range(3):
            (data / f"part-{i}.csv").write_text(f"a\n{i}\n")
        spec = spec_of(f"print({str(tmp_path)!r})", mounts={str(data): "/in"})

        @flow
        async def twice() -> tuple[StepOutcome, StepOutcome]:
            return await execute_step(spec, "local"), await execute_step(spec, "local")

        first, second = await twice()
        assert (first.state, second.state) == ("Completed", "Cached")
        assert walks == {str(data): 2}  # once per step run
        assert keys == ["s", "s"]

    async def test_an_agent_step_named_after_its_key_walks_its_inputs_once(
        self,
        prefect_api_url: str,
        tmp_path: Path,
        breakers: Breakers,
        walks: dict[str, int],
        keys: list[str],
    ) -> None:
        data = tmp_path / "in"
        data.mkdir()
        (data / "rows.csv").write_text("a\n1\n")
        code = (
            "import pathlib, sys; out = pathlib.Path('/aiop/out'); out.mkdir(parents=True);"
            " (out / 'f.txt').write_text(sys.argv[1])"
        )
        agent = AgentSpec.model_validate(
            minimal(name="writer", command=["python", "-c", code, "{text}"])
        )
        manager = AgentManager([agent], breakers=breakers)
        named: list[str] = []

        def content_addressed(spec: StepSpec, key: str) -> StepSpec:
            named.append(key)
            where = tmp_path / "work" / key
            return spec.model_copy(update={"outputs": {"/aiop/out": str(where)}})

        @flow
        async def once() -> StepOutcome:
            return await run_agent(
                manager,
                "writer",
                {"text": str(tmp_path)},
                "local",
                mounts={str(data): "/aiop/in"},
                prepare=content_addressed,
            )

        outcome = await once()
        assert outcome.error is None, outcome.error
        assert walks == {str(data): 1}
        # One key for the folder's name (the spec as the agent declares it), one for the spec
        # that runs (with its outputs); each computed once, from the one walk.
        assert keys == ["writer", "writer"] and len(named) == 1
        assert (tmp_path / "work" / named[0] / "f.txt").read_text() == str(tmp_path)
