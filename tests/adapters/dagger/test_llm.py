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
from pydantic import ValidationError

from adapters.dagger.llm import DaggerLlmRunner
from adapters.dagger.runner import DaggerRunner
from adapters.errors import (
    BudgetExceededError,
    InvalidSpecError,
    ProviderKeyError,
    ProviderUnavailableError,
    UnknownModelError,
)
from adapters.llm_contract import LlmBudget, LlmInput, LlmOutput, LlmSpec
from adapters.llm_route import EngineConfig
from adapters.ownership import MANIFEST, write_owned_file
from tests.fakes.dagger_engine import FakeDaggerEngine
from tests.fakes.dagger_llm import (
    EnvView,
    ProviderFailure,
    Reply,
    ToolCall,
    read_input,
    requests_until_the_engine_gives_up,
    save_directory,
    save_file,
)
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


class TestOutputsAreSavedWithTheirDeclaredType:
    """``Save`` binds an object of the output's type (core/mcp.go ``saveTool``); a wrong one is a
    tool error the model reads, and the output stays unbound."""

    def test_a_folder_saved_to_a_file_output_is_refused_to_the_model(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        def wrong(view: EnvView) -> str:
            return view.save("summary", view.create_directory({"s.md": "x"}))

        engine.model.script = [Reply("Saving.", (ToolCall("Save", wrong),)), Reply("Done.")]
        with pytest.raises(InvalidSpecError, match="without producing output 'summary'"):
            run(spec_for(report))
        said = engine.model.answered[1].messages[-1]
        assert said == "incompatible types: summary must be File, got Directory"

    def test_an_undeclared_output_is_refused_to_the_model(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        def undeclared(view: EnvView) -> str:
            return view.save("notes", view.create_file("x"))

        engine.model.script = [
            Reply("Saving notes.", (ToolCall("Save", undeclared),)),
            Reply("Saving the summary.", (save_file("summary", "ok\n"),)),
        ]
        result = run(spec_for(report))
        assert engine.model.answered[1].messages[-1] == (
            'unknown output: "notes" - please declare it first'
        )
        assert result.api_calls == 2  # type: ignore[attr-defined]


class TestTheBudgetHolds:
    """Nothing syncs an LLM that was not stepped: on the engine, ``env``, ``lastReply`` and
    ``tokenUsage`` of such an LLM run the model's whole loop, past every check of the adapter."""

    def test_max_tokens_stops_a_model_with_outputs_after_the_call_that_passed_it(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        engine.model.script = [
            Reply("Reading.", (ToolCall("ls", lambda v: "summary.json"),), 500, 100),
            Reply("Thinking.", (ToolCall("ls", lambda v: "summary.json"),), 500, 100),
            Reply("Saving.", (save_file("summary", summary_from_input),), 500, 100),
        ]
        budget = LlmBudget(max_api_calls=8, max_tokens=1000)
        with pytest.raises(BudgetExceededError, match="1200 tokens after 2") as caught:
            run(spec_for(report, budget=budget))
        assert (caught.value.limit, caught.value.used, caught.value.api_calls) == (
            "max_tokens",
            1200,
            2,
        )
        assert len(engine.model.answered) == 2  # the third call was never made
        assert not (report / "summary.md").exists()

    def test_the_result_counts_every_call_and_the_tokens_of_all_of_them(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        engine.model.script = [
            Reply("Reading.", (ToolCall("ls", lambda v: "summary.json"),), 300, 50),
            Reply("Saving.", (save_file("summary", summary_from_input),), 400, 60),
        ]
        result = run(spec_for(report))
        assert result.api_calls == 2  # type: ignore[attr-defined]
        assert result.usage.spent == 810  # type: ignore[attr-defined]  # cumulative: 350 + 460
        assert len(engine.model.answered) == 2

    def test_an_output_bound_by_an_earlier_run_in_the_session_is_not_this_runs(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        # A string-only Env is cached per client; Save mutates it for every run that builds it.
        spec = spec_for(
            report,
            inputs={"counts": LlmInput(kind="string", value="1000 rows", description="c")},
        )
        engine.model.script = [Reply("Saving.", (save_file("summary", "first\n"),))]
        run(spec)
        engine.model.script = [Reply("I will not.")]
        with pytest.raises(InvalidSpecError, match="without producing output 'summary'"):
            run(spec)


def test_an_input_folder_changed_since_an_earlier_run_of_the_session_is_read_anew(
    engine: FakeDaggerEngine, report: Path
) -> None:
    """``host.directory`` is cached per client unless noCache (core/schema/host.go): the second
    run would summarize the first run's files (a pipeline's session reads the folder earlier)."""
    engine.model.script = [Reply("Saving.", (save_file("summary", summary_from_input),))]
    run(spec_for(report))
    write_owned_file(report, "summary.json", json.dumps({"rows_in": 5, "quarantined": 0}).encode())
    engine.model.script = [Reply("Saving.", (save_file("summary", summary_from_input),))]
    run(spec_for(report))
    assert (report / "summary.md").read_text() == "5 rows came in; 0 were quarantined.\n"


class TestARetryReachesTheProvider:
    """The engine caches ``llm`` per session and an LLM keeps its loop's error: the same chain
    asked again in the session fails at once, without a request to the provider."""

    def test_a_rate_limited_run_again_on_the_same_session_asks_the_provider(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        engine.model.script = [
            ProviderFailure(429, "rate_limit_error", "rate limited"),
            Reply("Saving.", (save_file("summary", summary_from_input),)),
        ]
        with pytest.raises(ProviderUnavailableError):
            run(spec_for(report))
        refused = len(engine.model.calls)
        result = run(spec_for(report))
        assert result.outputs == {"summary": str(report / "summary.md")}  # type: ignore[attr-defined]
        assert len(engine.model.calls) == refused + 1
        assert len(engine.model.answered) == 1

    async def test_two_runs_on_one_shared_session_each_reach_the_provider(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        engine.model.script = [
            Reply("Saving.", (save_file("summary", "one\n"),)),
            Reply("Saving.", (save_file("summary", "two\n"),)),
        ]
        runner = DaggerRunner(provision_timeout_s=5)
        async with runner.session():
            await DaggerLlmRunner(runner).run(spec_for(report), key_value=KEY)
            await DaggerLlmRunner(runner).run(spec_for(report), key_value=KEY)
        assert len(engine.model.answered) == 2
        assert (report / "summary.md").read_text() == "two\n"
        assert engine.sessions == 1


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
        engine.model.script = [Reply("Saving.", (save_directory("pages", files),))]
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


def _real_engine_and_key() -> str:
    """The Anthropic key for the opt-in real-engine tests, or skip with the reason."""
    if os.environ.get("AIOP_TEST_REAL_DAGGER") != "1" and "DAGGER_SESSION_PORT" not in _AMBIENT:
        pytest.skip(
            "no real Dagger engine: set AIOP_TEST_REAL_DAGGER=1 with Docker running, or run the"
            " tests under `dagger run` (which provides a session)"
        )
    key = EngineConfig().key("ANTHROPIC_API_KEY")
    if key.found_in is None:
        pytest.skip(
            "no provider key: export ANTHROPIC_API_KEY or put it in .env (the engine reads it"
            " from there)"
        )
    return key.value or ""


_READ_AND_SAVE = (
    "Read summary.json in the directory input 'report' and save one line saying how many rows"
    " came in to the file output 'summary'."
)


@pytest.mark.dagger
async def test_a_real_model_summarizes_on_a_real_engine(report: Path) -> None:
    """Opt-in: a real engine and a real Anthropic key; a real model call costs a few cents."""
    key = _real_engine_and_key()
    spec = spec_for(report, prompt=_READ_AND_SAVE,
                    budget=LlmBudget(max_api_calls=6, max_tokens=50_000))  # fmt: skip
    result = await DaggerLlmRunner(DaggerRunner(provision_timeout_s=600)).run(spec, key_value=key)
    assert "1000" in (report / "summary.md").read_text()
    assert 0 < result.usage.spent <= 50_000 and 1 <= result.api_calls <= 6


@pytest.mark.dagger
async def test_a_real_model_stops_at_max_tokens_with_its_calls_and_tokens(report: Path) -> None:
    """Opt-in: the budget holds on a real engine (nothing syncs an LLM before its first step,
    which would run the whole loop there); the first call alone passes 500 tokens."""
    key = _real_engine_and_key()
    spec = spec_for(report, prompt=_READ_AND_SAVE,
                    budget=LlmBudget(max_api_calls=6, max_tokens=500))  # fmt: skip
    with pytest.raises(BudgetExceededError) as caught:
        await DaggerLlmRunner(DaggerRunner(provision_timeout_s=600)).run(spec, key_value=key)
    assert caught.value.limit == "max_tokens" and caught.value.api_calls == 1
    assert caught.value.used > 500 and not (report / "summary.md").exists()


@pytest.mark.dagger
async def test_a_run_again_on_the_same_real_session_reaches_the_provider_again(
    report: Path,
) -> None:
    """Opt-in: the engine caches ``llm`` per session and keeps a stepped LLM's result or error;
    each run steps its own branch, so the second run makes its own calls, paid and counted."""
    key = _real_engine_and_key()
    spec = spec_for(report, prompt=_READ_AND_SAVE,
                    budget=LlmBudget(max_api_calls=6, max_tokens=50_000))  # fmt: skip
    runner = DaggerRunner(provision_timeout_s=600)
    async with runner.session():
        first = await DaggerLlmRunner(runner).run(spec, key_value=key)
        second = await DaggerLlmRunner(runner).run(spec, key_value=key)
    assert first.api_calls >= 1 and second.api_calls >= 1
    assert second.usage.spent > 0


def test_a_model_past_timeout_s_is_stopped(engine: FakeDaggerEngine, report: Path) -> None:
    import time

    from adapters.errors import StepTimeoutError

    def slow(view: EnvView) -> str:
        time.sleep(0.5)
        return "late"

    # An OpenAI model: the engine does not retry it, so a short timeout_s is allowed.
    engine.model.client_env = {"OPENAI_API_KEY": KEY}
    engine.model.script = [Reply("Working.", (ToolCall("slow", slow),))]
    spec = spec_for(report, model="gpt-4.1", key_name="OPENAI_API_KEY", timeout_s=0.2)
    with pytest.raises(StepTimeoutError, match=r"timeout_s=0\.2"):
        run(spec)


class TestTheEnginesOwnRetries:
    """The engine retries Anthropic's and Google's passing failures for up to two minutes
    before it reports them, and never OpenAI's (core/llm.go ``loop``, ``IsRetryable``); the
    stand-in waits the same way on its virtual clock."""

    def test_an_anthropic_rate_limit_that_passes_within_the_engines_retries_is_never_seen(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        engine.model.script = [
            ProviderFailure(429, "rate_limit_error", "rate limited", for_s=30),
            Reply("Saving.", (save_file("summary", summary_from_input),)),
        ]
        result = run(spec_for(report))
        assert result.api_calls == 1  # type: ignore[attr-defined]
        assert engine.model.clock.now >= 30  # the engine waited it out
        assert len(engine.model.calls) > 2 and len(engine.model.answered) == 1

    def test_an_anthropic_rate_limit_is_reported_after_two_minutes_of_the_engines_retries(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        engine.model.script = [ProviderFailure(429, "rate_limit_error", "rate limited")]
        with pytest.raises(ProviderUnavailableError, match="retried it for up to 120 s first"):
            run(spec_for(report))
        assert 100 < engine.model.clock.now <= 120
        assert len(engine.model.calls) == requests_until_the_engine_gives_up(retried=True)

    def test_an_openai_rate_limit_is_reported_at_once(
        self, engine: FakeDaggerEngine, report: Path
    ) -> None:
        engine.model.client_env = {"OPENAI_API_KEY": KEY}
        engine.model.script = [ProviderFailure(429, "rate_limit_exceeded", "slow down")]
        spec = spec_for(report, model="gpt-4.1", key_name="OPENAI_API_KEY")
        with pytest.raises(ProviderUnavailableError, match="does not retry the openai provider"):
            run(spec)
        assert engine.model.clock.now == 0 and len(engine.model.calls) == 1

    @pytest.mark.parametrize(("status", "retried"), [(503, True), (429, True), (500, False)])
    def test_google_is_retried_on_429_and_503_only(
        self, engine: FakeDaggerEngine, report: Path, status: int, retried: bool
    ) -> None:
        engine.model.client_env = {"GEMINI_API_KEY": KEY}
        engine.model.script = [ProviderFailure(status, "UNAVAILABLE", "try later")]
        spec = spec_for(report, model="gemini-2.5-flash", key_name="GEMINI_API_KEY")
        with pytest.raises(ProviderUnavailableError):
            run(spec)
        assert len(engine.model.calls) == requests_until_the_engine_gives_up(retried=retried)

    @pytest.mark.parametrize(
        ("model", "key", "timeout_s", "refused"),
        [
            ("claude-sonnet-4-5", "ANTHROPIC_API_KEY", 120, True),
            ("claude-sonnet-4-5", "ANTHROPIC_API_KEY", 180, False),
            ("gemini-2.5-flash", "GEMINI_API_KEY", 90, True),
            ("gpt-4.1", "OPENAI_API_KEY", 30, False),
        ],
    )
    def test_a_timeout_must_leave_room_for_the_engines_retries(
        self, report: Path, model: str, key: str, timeout_s: float, refused: bool
    ) -> None:
        def make() -> LlmSpec:
            return spec_for(report, model=model, key_name=key, timeout_s=timeout_s)

        if refused:
            with pytest.raises(ValidationError, match=r"up to 120 s before it reports it"):
                make()
        else:
            assert make().timeout_s == timeout_s

    def test_an_agent_whose_timeout_leaves_no_room_is_refused_when_loaded(self) -> None:
        from agents.spec import AgentSpec

        with pytest.raises(ValidationError, match=r"timeout_s\n.*give the agent timeout_s: 180"):
            AgentSpec.model_validate(
                {
                    "name": "quick",
                    "kind": "llm",
                    "description": "d",
                    "capabilities": ["summarize"],
                    "llm": {"prompt": "Summarize.", "model": "claude-sonnet-4-5"},
                    "secrets": ["ANTHROPIC_API_KEY"],
                    "timeout_s": 60,
                }
            )
