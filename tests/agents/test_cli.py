"""``aiop agents``: validate and list, and run through a real Prefect flow run; one paragraph
and the right exit code on every failure, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.agents.conftest import minimal, write_definition

ROOT = Path(__file__).resolve().parents[2]


def cli(
    *args: str, agents_path: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if k not in ("AIOP_AGENTS_PATH", "PREFECT_API_URL")
    }
    if agents_path is not None:
        environ["AIOP_AGENTS_PATH"] = str(agents_path)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "agents", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_paragraph_error(done: subprocess.CompletedProcess[str]) -> str:
    console = done.stdout + done.stderr
    assert "Traceback" not in console, console
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    return done.stderr[done.stderr.index("error: ") :]


class TestValidate:
    def test_the_shipped_definitions_are_valid(self) -> None:
        done = cli("validate")
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("\nok ") + done.stdout.startswith("ok ") == 7
        assert "validate-duckdb" in done.stdout and "7 valid, 0 invalid" in done.stdout

    def test_an_invalid_file_is_named_and_the_valid_ones_listed(self, tmp_path: Path) -> None:
        write_definition(tmp_path, minimal(name="fine"))
        bad = write_definition(tmp_path, minimal(name="broken", timeout="5"), file="broken.yaml")
        done = cli("validate", str(tmp_path))
        assert done.returncode == 1
        message = one_paragraph_error(done)
        assert message.startswith(f"error: {bad}: field 'timeout'") and "timeout_s" in message
        assert "ok     fine" in done.stdout and "1 valid, 1 invalid" in done.stdout

    def test_without_a_path_it_checks_aiop_agents_path_too(self, tmp_path: Path) -> None:
        write_definition(tmp_path, "name: [\n", file="oops.yaml")
        done = cli("validate", agents_path=tmp_path)
        assert done.returncode == 1
        assert str(tmp_path / "oops.yaml") in one_paragraph_error(done)
        assert "7 valid, 1 invalid" in done.stdout

    def test_definitions_that_reach_too_far_are_each_refused(self, tmp_path: Path) -> None:
        llm = {
            "kind": "llm",
            "description": "Reads and writes.",
            "capabilities": ["summarize"],
            "parameters": {"report": {"description": "report folder"}},
            "secrets": ["ANTHROPIC_API_KEY"],
        }
        prompt = "Summarize {report}"
        write_definition(
            tmp_path,
            {**llm, "name": "big", "llm": {"prompt": prompt, "budget": {"max_tokens": 10**29}}},
        )
        write_definition(
            tmp_path,
            {
                **llm,
                "name": "far",
                "llm": {
                    "prompt": prompt,
                    "outputs": {"o": {"kind": "file", "path": "../../x", "description": "o"}},
                },
            },
        )
        write_definition(
            tmp_path,
            {
                **llm,
                "name": "keys",
                "llm": {
                    "prompt": prompt,
                    "inputs": {"k": {"kind": "file", "value": "~/.ssh/id_rsa", "description": "k"}},
                },
            },
        )
        done = cli("validate", str(tmp_path))
        assert done.returncode == 1 and "0 valid, 3 invalid" in done.stdout
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 3 and "Traceback" not in done.stderr
        assert any("max_tokens" in e for e in errors) and any("'..'" in e for e in errors)
        assert any("outside_working_tree" in e for e in errors)

    def test_a_path_that_does_not_exist_is_bad_usage(self, tmp_path: Path) -> None:
        done = cli("validate", str(tmp_path / "nope"))
        assert done.returncode == 2
        assert "no such file or folder" in one_paragraph_error(done)


def test_list_shows_every_agent_with_its_breaker_state() -> None:
    done = cli("list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "KIND",
        "CAPABILITIES",
        "PRIORITY",
        "BREAKER",
        "RECENT",
        "RUNS",
    ]
    row = next(line for line in lines if line.startswith("summarize-llm "))
    assert row.split()[:5] == ["summarize-llm", "llm", "summarize", "0", "closed"]
    assert "recent runs: no Prefect server to ask" in done.stdout


class TestRunUsage:
    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["run", "nobody"], "'nobody' is neither an agent nor a capability"),
            (["run", "hello"], "agent 'hello' needs parameter 'who'"),
            (["run", "hello", "--param", "who"], "--param 'who' is not KEY=VALUE"),
            (["run", "hello", "--param", "who=x", "--param", "whom=y"], "has no parameter 'whom'"),
            (
                ["run", "hello", "--param", "who=x", "--backend", "k8s"],
                "'k8s' is not one of 'auto', 'dagger', 'local'",
            ),
            (["frobnicate"], "No such command 'frobnicate'"),
        ],
    )
    def test_bad_usage_exits_2_before_any_flow_run(
        self, tmp_path: Path, args: list[str], expected: str
    ) -> None:
        write_definition(tmp_path, HELLO)
        done = cli(*args, agents_path=tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        assert expected in one_paragraph_error(done)
        assert "Flow run" not in done.stdout + done.stderr

    def test_an_llm_agent_without_engine_or_key_is_refused_before_any_flow_run(self) -> None:
        done = cli(
            "run",
            "summarize-llm",
            "--param",
            "report=/aiop/in",
            _EXPERIMENTAL_DAGGER_RUNNER_HOST="tcp://127.0.0.1:9",
            ANTHROPIC_API_KEY="",
        )
        assert done.returncode == 1
        message = one_paragraph_error(done)
        assert "refused before anything ran" in message
        assert "none is reachable (the remote engine tcp://127.0.0.1:9 does not answer)" in message
        assert "the provider key ANTHROPIC_API_KEY is not set where the Dagger engine reads it" in (
            message
        )
        assert "Flow run" not in done.stdout + done.stderr


HELLO = minimal(
    name="hello",
    capabilities=["greet"],
    parameters={"who": {"description": "who to greet"}},
    command=["python", "-c", "import sys; print('hello', sys.argv[1])", "{who}"],
    retry={"attempts": 1},
)
FAILING = minimal(
    name="failing",
    capabilities=["fail"],
    parameters={"why": {"description": "why it fails"}},
    command=["python", "-c", "import sys; sys.exit(sys.argv[1])", "{why}"],
    retry={"attempts": 1},
)


@pytest.mark.prefect
class TestRun:
    def test_runs_the_agent_in_one_flow_run_and_prints_its_output(
        self, prefect_api_url: str, tmp_path: Path, request: pytest.FixtureRequest
    ) -> None:
        write_definition(tmp_path, HELLO)
        who = request.node.name
        done = cli(
            "run",
            "hello",
            "--param",
            f"who={who}",
            "--backend",
            "local",
            agents_path=tmp_path,
            PREFECT_API_URL=prefect_api_url,
        )
        console = done.stdout + done.stderr
        assert done.returncode == 0, console
        assert "Traceback" not in console and "| ERROR" not in console
        assert f"hello {who}\n" in done.stdout
        assert "agent 'hello': Completed" in done.stderr
        assert console.count("Beginning flow run") == 1
        listing = ""
        deadline = time.monotonic() + 30  # the server records task runs in the background
        while "1 ok, 0 failed" not in listing and time.monotonic() < deadline:
            listing = cli("list", agents_path=tmp_path, PREFECT_API_URL=prefect_api_url).stdout
        row = next(line for line in listing.splitlines() if line.startswith("hello "))
        assert row.endswith("1 ok, 0 failed"), listing

    def test_a_failing_agent_exits_1_with_one_paragraph(
        self, prefect_api_url: str, tmp_path: Path, request: pytest.FixtureRequest
    ) -> None:
        write_definition(tmp_path, FAILING)
        done = cli(
            "run",
            "failing",
            "--param",
            f"why={request.node.name}",
            "--backend",
            "local",
            agents_path=tmp_path,
            PREFECT_API_URL=prefect_api_url,
        )
        assert done.returncode == 1
        message = one_paragraph_error(done)
        assert message.startswith(
            "error: agent run 'failing' failed: step 'failing': exited with code 1"
        )
        assert request.node.name in message and "troubleshooting/#step-failed" in message


class TestRunOutputOwnership:
    """``--output TARGET=HOST`` never replaces a folder of files the platform did not write."""

    def test_a_foreign_output_folder_is_bad_usage_before_any_flow_run(self, tmp_path: Path) -> None:
        project = tmp_path / "project"
        (project / ".git").mkdir(parents=True)
        (project / "summary.json").write_text("{}")
        write_definition(tmp_path / "agents", HELLO)
        done = cli(
            "run", "hello", "--param", "who=x", "--output", f"/aiop/out={project}",
            "--backend", "local", agents_path=tmp_path / "agents",
        )  # fmt: skip
        assert done.returncode == 2
        message = one_paragraph_error(done)
        assert f"--output /aiop/out={project} is a folder of files the platform did not" in message
        assert "Flow run" not in done.stdout + done.stderr
        assert sorted(p.name for p in project.iterdir()) == [".git", "summary.json"]

    def test_an_unwritable_output_is_bad_usage_before_any_flow_run(self, tmp_path: Path) -> None:
        (tmp_path / "afile").write_text("x")
        write_definition(tmp_path / "agents", HELLO)
        done = cli(
            "run", "hello", "--param", "who=x", "--output", f"/aiop/out={tmp_path}/afile/out",
            "--backend", "local", agents_path=tmp_path / "agents",
        )  # fmt: skip
        assert done.returncode == 2
        assert "cannot be created" in one_paragraph_error(done)

    @pytest.mark.parametrize("what", ["a-file", "a-link"])
    def test_a_file_output_over_a_users_file_or_a_link_is_bad_usage(
        self, tmp_path: Path, what: str
    ) -> None:
        """Issue 21, item 2: a file output obeys the folder rules: never over a file the platform
        did not write, never through a symbolic link."""
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "thesis.tex").write_text("years of work")
        if what == "a-link":
            (tmp_path / "out").mkdir()
            (tmp_path / "out" / "x.txt").symlink_to(docs / "thesis.tex")
        host = docs / "thesis.tex" if what == "a-file" else tmp_path / "out" / "x.txt"
        write_definition(tmp_path / "agents", HELLO)
        done = cli(
            "run", "hello", "--param", "who=x", "--output", f"/aiop/res/x.txt={host}",
            "--backend", "local", agents_path=tmp_path / "agents",
        )  # fmt: skip
        assert done.returncode == 2, done.stdout + done.stderr
        message = one_paragraph_error(done)
        kind = "a file" if what == "a-file" else "a symbolic link"
        assert f"{host} is {kind} the platform did not write" in message, message
        assert "Flow run" not in done.stdout + done.stderr
        assert (docs / "thesis.tex").read_text() == "years of work"
