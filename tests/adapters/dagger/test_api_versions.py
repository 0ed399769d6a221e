"""Every query the adapters send, against Dagger's official v0.21.8 and v1.0.0-beta.10 schemas.

A container step and an llm step (every kind of mount, input and output) run on the stand-in,
which records the queries the SDK really sent. Each one must be valid on v0.21.8, the release the
adapters speak. On 1.0 the container path is unchanged and the llm path breaks exactly as
:data:`LLM_PATH_ON_1_0` records (fields of the 0.21 schema the queries use, and what 1.0 made of
them), which the plan for the move (ADR 0024) starts from. An llm step on an engine of another
release is refused in one line before any LLM query is sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import graphql
import pytest

from adapters.contract import StepSpec
from adapters.dagger.llm import DaggerLlmRunner
from adapters.dagger.runner import DaggerRunner
from adapters.errors import UnsupportedEngineError
from adapters.llm_contract import LlmInput, LlmOutput, LlmSpec
from adapters.ownership import write_owned_file
from tests.fakes.dagger_engine import (
    OFFICIAL_SCHEMA_PATH,
    SCHEMA_ENV,
    ExecOutcome,
    FakeDaggerEngine,
)
from tests.fakes.dagger_llm import Reply, save_directory, save_file
from tests.fakes.session import standin_session
from tests.services import REQUIRE_SERVICES_ENV, services_required

SCHEMA_1_0_PATH = OFFICIAL_SCHEMA_PATH.with_name("schema-v1.0.0-beta.10.graphqls")
KEY = "sk-ant-api-versions-0001"

#: The 0.21 fields the llm path's queries use that v1.0.0-beta.10 changed, and how (checked
#: against the shared schema file; ``model``, ``lastReply``, ``tokenUsage``, ``withPrompt`` and
#: the container API are unchanged).
LLM_PATH_ON_1_0 = {
    "Binding.asDirectory": "type Binding is gone",
    "Binding.asFile": "type Binding is gone",
    "Binding.digest": "type Binding is gone",
    "Binding.isNull": "type Binding is gone",
    "Env.id": "type Env is gone",
    "Env.output": "type Env is gone",
    "Env.withDirectoryInput": "type Env is gone",
    "Env.withDirectoryOutput": "type Env is gone",
    "Env.withFileInput": "type Env is gone",
    "Env.withFileOutput": "type Env is gone",
    "Env.withStringInput": "type Env is gone",
    "LLM.attempt": "gone",
    "LLM.env": "gone",
    "LLM.hasPrompt": "gone",
    "LLM.step": "ID! -> LLM!",
    "LLM.withEnv": "gone",
    "Query.env": "gone",
    "Query.llm": "argument(s) maxAPICalls gone",
}


def _schema(path: Path) -> graphql.GraphQLSchema:
    if not path.is_file():
        missing = (
            f"the official Dagger schema is not at {path} (set {SCHEMA_ENV} to the v0.21.8 one;"
            " the 1.0 one is read beside it); without it the queries are not checked"
        )
        if services_required():
            pytest.fail(f"{missing}. {REQUIRE_SERVICES_ENV}=1 makes this a failure.")
        pytest.skip(f"{missing}; set {REQUIRE_SERVICES_ENV}=1 to fail instead of skipping.")
    return graphql.build_schema(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def schemas() -> tuple[graphql.GraphQLSchema, graphql.GraphQLSchema]:
    return _schema(OFFICIAL_SCHEMA_PATH), _schema(SCHEMA_1_0_PATH)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeDaggerEngine]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    with standin_session(monkeypatch) as fake:
        fake.behaviour = lambda request: ExecOutcome(stdout="hi\n", files={"/out/r.txt": "r"})
        fake.model.valid_keys = {KEY}
        yield fake


def _sent(engine: FakeDaggerEngine, since: int = 0) -> list[str]:
    return [q.text for q in engine.queries[since:] if "__schema" not in q.text]


def container_queries(engine: FakeDaggerEngine, tmp_path: Path) -> list[str]:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a")
    (tmp_path / "f.txt").write_text("f")
    spec = StepSpec(
        name="every-part",
        image="python:3.12-slim",
        args=["python", "-V"],
        env={"A": "1"},
        secrets={"TOKEN": "t0k-en"},
        mounts={str(tmp_path / "in"): "/in", str(tmp_path / "f.txt"): "/f.txt"},
        caches={"c": "/c"},
        workdir="/w",
        outputs={"/out/r.txt": str(tmp_path / "res" / "r.txt")},
        requirements=["duckdb==1.1.3"],
        timeout_s=30,
    )
    asyncio.run(DaggerRunner(provision_timeout_s=5).run(spec))
    return _sent(engine)


def llm_spec(tmp_path: Path) -> LlmSpec:
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "d.md").write_text("d")
    (tmp_path / "note.txt").write_text("n")
    write_owned_file(tmp_path / "out", "summary.json", json.dumps({}).encode())
    return LlmSpec(
        name="every-binding",
        model="claude-sonnet-4-5",
        prompt="Use them all.",
        key_name="ANTHROPIC_API_KEY",
        inputs={
            "docs": LlmInput(kind="directory", value=str(tmp_path / "docs"), description="d"),
            "note": LlmInput(kind="file", value=str(tmp_path / "note.txt"), description="n"),
            "text": LlmInput(kind="string", value="words", description="t"),
        },
        outputs={
            "summary": LlmOutput(kind="file", path=str(tmp_path / "out/s.md"), description="s"),
            "notes": LlmOutput(kind="directory", path=str(tmp_path / "out/n"), description="n"),
        },
    )


def llm_queries(engine: FakeDaggerEngine, tmp_path: Path) -> list[str]:
    engine.model.script = [
        Reply("Saving.", (save_file("summary", "s\n"), save_directory("notes", {"n.md": "n"})))
    ]
    asyncio.run(DaggerLlmRunner(DaggerRunner(provision_timeout_s=5)).run(llm_spec(tmp_path)))
    return _sent(engine)


def fields_used(schema: graphql.GraphQLSchema, query: str) -> set[tuple[str, str, str, str]]:
    """(type, field, arguments, type of the field) of every field the query selects."""
    info = graphql.TypeInfo(schema)
    found: set[tuple[str, str, str, str]] = set()

    class Fields(graphql.Visitor):
        def enter_field(self, node: graphql.FieldNode, *_: object) -> None:
            parent, field = info.get_parent_type(), info.get_field_def()
            if parent is None or field is None or node.name.value.startswith("__"):
                return
            args = ",".join(sorted(a.name.value for a in node.arguments or ()))
            found.add((parent.name, node.name.value, args, str(field.type)))

    graphql.visit(graphql.parse(query), graphql.TypeInfoVisitor(info, Fields()))
    return found


def changed_on(
    new: graphql.GraphQLSchema, old: graphql.GraphQLSchema, queries: list[str]
) -> dict[str, str]:
    """For each field the queries use (read on ``old``), what ``new`` made of it, if it changed."""
    changes: dict[str, str] = {}
    for type_name, name, args, field_type in set().union(*(fields_used(old, q) for q in queries)):
        key = f"{type_name}.{name}"
        theirs = new.type_map.get(type_name)
        field = getattr(theirs, "fields", {}).get(name) if theirs is not None else None
        gone = [a for a in args.split(",") if a and field is not None and a not in field.args]
        if theirs is None:
            changes[key] = f"type {type_name} is gone"
        elif field is None:
            changes[key] = "gone"
        elif gone:
            changes[key] = f"argument(s) {', '.join(gone)} gone"
        elif str(field.type) != field_type:
            changes[key] = f"{field_type} -> {field.type}"
    return changes


def _errors(schema: graphql.GraphQLSchema, queries: list[str]) -> list[str]:
    return [e.message for q in queries for e in graphql.validate(schema, graphql.parse(q))]


class TestTheQueriesOnBothReleases:
    def test_the_container_path_is_valid_on_v0_21_8_and_unchanged_on_1_0(
        self,
        schemas: tuple[graphql.GraphQLSchema, graphql.GraphQLSchema],
        engine: FakeDaggerEngine,
        tmp_path: Path,
    ) -> None:
        v021, v10 = schemas
        queries = container_queries(engine, tmp_path)
        assert len(queries) >= 5
        assert _errors(v021, queries) == []
        assert _errors(v10, queries) == []
        assert changed_on(v10, v021, queries) == {}

    def test_the_llm_path_is_valid_on_v0_21_8_and_breaks_on_1_0_as_recorded(
        self,
        schemas: tuple[graphql.GraphQLSchema, graphql.GraphQLSchema],
        engine: FakeDaggerEngine,
        tmp_path: Path,
    ) -> None:
        v021, v10 = schemas
        queries = llm_queries(engine, tmp_path)
        assert _errors(v021, queries) == []
        assert _errors(v10, queries)  # 1.0 would refuse them
        assert changed_on(v10, v021, queries) == LLM_PATH_ON_1_0


class TestAnEngineOfAnotherRelease:
    def test_an_llm_step_is_refused_in_one_line_naming_the_supported_engines(
        self, engine: FakeDaggerEngine, tmp_path: Path
    ) -> None:
        engine.version = "v1.0.0-beta.10"
        with pytest.raises(UnsupportedEngineError) as caught:
            asyncio.run(
                DaggerLlmRunner(DaggerRunner(provision_timeout_s=5)).run(llm_spec(tmp_path))
            )
        message = str(caught.value)
        assert "\n" not in message and not caught.value.transient
        assert "v1.0.0-beta.10" in message and "engines v0.21.x" in message
        assert engine.model.calls == [] and engine.calls("llm") == []

    def test_a_container_step_runs_on_it(self, engine: FakeDaggerEngine, tmp_path: Path) -> None:
        engine.version = "v1.0.0-beta.10"
        assert container_queries(engine, tmp_path)  # ran: the container API did not change
