"""The Dagger LLM adapter against the stand-in engine: the loop, the budget, outputs, error mapping.

Every query the adapter sends is validated against the official v0.21.8 schema by the stand-in
(when the shared schema file is present); a rejected query fails the test.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.dagger_llm import DaggerLlmRunner
from adapters.dagger_runner import DaggerRunner
from adapters.errors import (
    BudgetExceededError,
    InvalidSpecError,
    ProviderKeyError,
    ProviderUnavailableError,
    UnknownModelError,
)
from adapters.llm_contract import LlmBudget, LlmInput, LlmOutput, LlmSpec
from adapters.ownership import MANIFEST, write_owned_file
from tests.fakes.dagger_engine import FakeDaggerEngine
from tests.fakes.dagger_llm import EnvView, ProviderFailure, Reply, ToolCall, read_input, save_file
from tests.fakes.session import standin_session

KEY = "sk-ant-test-0123456789abcdef"


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaggerEngine]:
    with standin_session(monkeypatch) as fake:
        fake.model.client_env = {"ANTHROPIC_API_KEY": KEY}
        fake.model.valid_keys = {KEY}
        yield fake


@pytest.fixture
def report(tmp_path: Path) -> Path:
    """A result folder as the pipeline leaves it: written by the platform (it has a manifest)."""
    folder = tmp_path / "results"
    write_owned_file(
        folder, "summary.json", json.dumps({"rows_in": 1000, "quarantined": 7}).encode()
    )
    return folder


def spec_for(report: Path, **changes: object) -> LlmSpec:
    data: dict[str, object] = {
        "name": "summarize",
        "model": "claude-sonnet-4-5",
        "prompt": "Summarize the report.",
        "key_name": "ANTHROPIC_API_KEY",
        "inputs": {"report": LlmInput(kind="directory", value=str(report), description="r")},
        "outputs": {
            "summary": LlmOutput(kind="file", path=str(report / "summary.md"), description="s")
        },
        "budget": LlmBudget(max_api_calls=4, max_tokens=1000),
        **changes,
    }
    return LlmSpec.model_validate(data)


def summary_from_input(view: EnvView) -> str:
    counts = json.loads(read_input(view, "report", "summary.json"))
    return f"{counts['rows_in']} rows came in; {counts['quarantined']} were quarantined.\n"


def run(spec: LlmSpec, key: str | None = KEY) -> object:
    return asyncio.run(
        DaggerLlmRunner(DaggerRunner(provision_timeout_s=5)).run(spec, key_value=key)
    )


class TestLoop:
    def test_the_model_reads_its_input_and_its_output_is_written_with_token_usage(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        engine.model.script = [
            Reply(
                "Reading.", (ToolCall("read", lambda v: read_input(v, "report", "summary.json")),)
            ),
            Reply("Saving.", (save_file("summary", summary_from_input),), 300, 50),
            Reply("Done."),
        ]
        result = run(spec_for(report))
        assert (report / "summary.md").read_text() == "1000 rows came in; 7 were quarantined.\n"
        assert "summary.md" in json.loads((report / MANIFEST).read_text())["files"]
        assert result.outputs == {"summary": str(report / "summary.md")}  # type: ignore[attr-defined]
        assert result.api_calls == 2  # type: ignore[attr-defined]
        assert result.usage.input_tokens == 400  # type: ignore[attr-defined]
        assert result.usage.total_tokens == 470  # type: ignore[attr-defined]
        assert result.reply == "Saving."  # type: ignore[attr-defined]
        assert engine.model.script == [Reply("Done.")]  # stopped once every output was bound
        assert engine.model.calls[0].key == KEY  # read from the session client's environment

    def test_a_model_that_never_finishes_stops_at_max_api_calls(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        engine.model.script = [Reply("More.", (ToolCall("ls", lambda v: "x"),), 10, 1)] * 10
        with pytest.raises(BudgetExceededError) as caught:
            run(spec_for(report))
        assert (caught.value.limit, caught.value.allowed, caught.value.used) == (
            "max_api_calls",
            4,
            4,
        )
        assert len(engine.model.calls) == 4
        assert not (report / "summary.md").exists()

    def test_passing_max_tokens_stops_after_that_call(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        engine.model.script = [Reply("Big.", (ToolCall("ls", lambda v: "x"),), 900, 200)] * 3
        with pytest.raises(BudgetExceededError, match="max_tokens=1000") as caught:
            run(spec_for(report))
        assert caught.value.used == 1100
        assert len(engine.model.calls) == 1

    def test_a_model_that_ends_without_the_output_is_a_clear_error(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        engine.model.script = [Reply("I will not.")]
        with pytest.raises(InvalidSpecError, match="without producing output 'summary'"):
            run(spec_for(report))


class TestBeforeTheEngine:
    def test_a_missing_input_is_refused_before_any_query(
        self, engine: FakeDaggerEngine, tmp_path: Path
    ) -> None:
        with pytest.raises(InvalidSpecError, match="is not a folder"):
            run(spec_for(tmp_path / "nowhere"))
        assert engine.queries == []

    def test_an_output_into_a_folder_the_platform_did_not_write_is_refused(
        self, engine: FakeDaggerEngine, report: Path, tmp_path: Path
    ) -> None:
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "notes.txt").write_text("keep")
        out = {"summary": LlmOutput(kind="file", path=str(tmp_path / "mine/s.md"), description="s")}
        with pytest.raises(InvalidSpecError, match="did not write"):
            run(spec_for(report, outputs=out))
        assert engine.queries == []


def _folder(tmp_path: Path, case: str) -> Path:
    """A folder an output goes into: new, empty, a result of the platform's, or a user's."""
    folder = tmp_path / case
    if case == "empty":
        folder.mkdir()
    elif case == "owned":
        write_owned_file(folder, "earlier.txt", b"an earlier result\n")
    elif case == "foreign":
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
    return folder


class TestWhereOutputsGo:
    """Issue 26: an output goes into a new, empty or owned folder; a user's folder is refused
    before the model is called (and paid for)."""

    @pytest.mark.parametrize("case", ["new", "empty", "owned"])
    def test_a_file_output_is_written_and_recorded(
        self, engine: FakeDaggerEngine, report: Path, tmp_path: Path, case: str
    ) -> None:
        folder = _folder(tmp_path, case)
        engine.model.script = [Reply("Saving.", (save_file("summary", "a summary\n"),))]
        out = {"summary": LlmOutput(kind="file", path=str(folder / "s.md"), description="s")}
        result = run(spec_for(report, outputs=out))
        assert (folder / "s.md").read_text() == "a summary\n"
        assert result.outputs == {"summary": str(folder / "s.md")}  # type: ignore[attr-defined]
        recorded = json.loads((folder / MANIFEST).read_text())["files"]
        assert "s.md" in recorded
        assert ("earlier.txt" in recorded) is (case == "owned")
        assert sorted(p.name for p in folder.iterdir() if p.name != MANIFEST) == sorted(
            ["s.md", *(["earlier.txt"] if case == "owned" else [])]
        )  # no landing file left behind

    @pytest.mark.parametrize("case", ["new", "empty", "owned"])
    def test_a_directory_output_is_written_and_recorded(
        self, engine: FakeDaggerEngine, report: Path, tmp_path: Path, case: str
    ) -> None:
        folder = _folder(tmp_path, case)
        files = {"a.md": "A\n", "sub/b.md": "B\n"}
        engine.model.script = [
            Reply("Saving.", (ToolCall("save", lambda v: v.save_directory("pages", files)),))
        ]
        out = {"pages": LlmOutput(kind="directory", path=str(folder), description="p")}
        run(spec_for(report, outputs=out))
        assert (folder / "a.md").read_text() == "A\n" and (folder / "sub/b.md").read_text() == "B\n"
        recorded = json.loads((folder / MANIFEST).read_text())["files"]
        assert {"a.md", "sub/b.md"} <= set(recorded)

    @pytest.mark.parametrize("kind", ["file", "directory"])
    def test_a_folder_of_the_users_files_is_refused_before_the_model_is_called(
        self, engine: FakeDaggerEngine, report: Path, tmp_path: Path, kind: str
    ) -> None:
        folder = _folder(tmp_path, "foreign")
        path = folder / "s.md" if kind == "file" else folder
        out = {"summary": LlmOutput(kind=kind, path=str(path), description="s")}  # type: ignore[arg-type]
        engine.model.script = [Reply("Saving.", (save_file("summary", "x\n"),))]
        with pytest.raises(InvalidSpecError, match="did not write") as caught:
            run(spec_for(report, outputs=out))
        assert str(folder) in str(caught.value)
        assert engine.model.calls == [] and engine.queries == []
        assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]

    def test_a_file_the_platform_did_not_write_is_not_replaced(
        self, engine: FakeDaggerEngine, report: Path, tmp_path: Path
    ) -> None:
        folder = _folder(tmp_path, "owned")
        (folder / "s.md").write_text("my own summary")
        out = {"summary": LlmOutput(kind="file", path=str(folder / "s.md"), description="s")}
        with pytest.raises(InvalidSpecError, match=r"s\.md\) is a file the platform did not write"):
            run(spec_for(report, outputs=out))
        assert engine.model.calls == []
        assert (folder / "s.md").read_text() == "my own summary"


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (ProviderFailure(429, "rate_limit_error", "rate limited"), ProviderUnavailableError),
        (ProviderFailure(529, "overloaded_error", "Overloaded"), ProviderUnavailableError),
        (ProviderFailure(500, "api_error", "Internal server error"), ProviderUnavailableError),
    ],
)
def test_passing_provider_failures_are_transient(
    engine: FakeDaggerEngine, report: Path, failure: ProviderFailure, error: type[Exception]
) -> None:
    engine.model.script = [failure]
    with pytest.raises(error) as caught:
        run(spec_for(report))
    assert caught.value.transient  # type: ignore[attr-defined]


def test_a_refused_key_is_permanent_and_never_shown(engine: FakeDaggerEngine, report: Path) -> None:
    bad = "sk-ant-wrong-key-value-0000\nsecond-line-of-the-key"
    engine.model.client_env = {"ANTHROPIC_API_KEY": bad}
    with pytest.raises(ProviderKeyError) as caught:
        run(spec_for(report), key=bad)
    assert not caught.value.transient
    assert "ANTHROPIC_API_KEY" in str(caught.value)
    assert bad not in str(caught.value) and "second-line-of-the-key" not in str(caught.value)


def test_no_key_at_all_is_a_key_error(engine: FakeDaggerEngine, report: Path) -> None:
    engine.model.client_env = {}
    with pytest.raises(ProviderKeyError, match="x-api-key header is required"):
        run(spec_for(report), key=None)


def test_an_unknown_model_is_permanent(engine: FakeDaggerEngine, report: Path) -> None:
    with pytest.raises(UnknownModelError, match="claude-nonexistent") as caught:
        run(spec_for(report, model="claude-nonexistent"))
    assert not caught.value.transient


def test_a_reply_that_quotes_the_key_is_masked(engine: FakeDaggerEngine, report: Path) -> None:
    engine.model.script = [
        Reply(f"Your key is {KEY}.", (save_file("summary", "done\n"),)),
    ]
    result = run(spec_for(report))
    assert KEY not in result.reply and "***" in result.reply  # type: ignore[attr-defined]


# The session a real engine run uses: `dagger run` provides one, else AIOP_TEST_REAL_DAGGER=1 lets
# the SDK start its CLI (Docker needed). Read before the stand-in fixtures change the environment.
_AMBIENT = {
    n: os.environ[n] for n in ("DAGGER_SESSION_PORT", "DAGGER_SESSION_TOKEN") if n in os.environ
}


@pytest.mark.dagger
async def test_a_real_model_summarizes_on_a_real_engine(report: Path) -> None:
    """Opt-in: a real engine and a real Anthropic key; a real model call costs a few cents."""
    if os.environ.get("AIOP_TEST_REAL_DAGGER") != "1" and "DAGGER_SESSION_PORT" not in _AMBIENT:
        pytest.skip(
            "no real Dagger engine: set AIOP_TEST_REAL_DAGGER=1 with Docker running, or run the"
            " tests under `dagger run` (which provides a session)"
        )
    key = os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        pytest.skip("no provider key: export ANTHROPIC_API_KEY (the engine reads it from there)")
    spec = spec_for(report, prompt="Read summary.json in the directory input 'report' and save"
                    " one line saying how many rows came in to the file output 'summary'.",
                    budget=LlmBudget(max_api_calls=6, max_tokens=50_000))  # fmt: skip
    result = await DaggerLlmRunner(DaggerRunner(provision_timeout_s=600)).run(spec, key_value=key)
    assert "1000" in (report / "summary.md").read_text()
    assert 0 < result.usage.spent <= 50_000 and 1 <= result.api_calls <= 6


def test_a_model_past_timeout_s_is_stopped(engine: FakeDaggerEngine, report: Path) -> None:
    import time

    from adapters.errors import StepTimeoutError

    def slow(view: EnvView) -> str:
        time.sleep(0.5)
        return "late"

    engine.model.script = [Reply("Working.", (ToolCall("slow", slow),))]
    with pytest.raises(StepTimeoutError, match=r"timeout_s=0\.2"):
        run(spec_for(report, timeout_s=0.2))
