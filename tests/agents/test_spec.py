"""Agent definitions: each bad field is reported naming the file, the field and the fix; good ones
become exactly the StepSpec they declare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.errors import InvalidInputError
from adapters.retry_policy import RetryPolicy
from agents import AgentSpec, DefinitionError, load_file
from tests.agents.conftest import minimal, write_definition

LLM = {
    "kind": "llm",
    "image": None,
    "command": None,
    "parameters": {"report": {"description": "report folder"}},
    "llm": {"prompt": "Summarize {report}"},
    "secrets": ["ANTHROPIC_API_KEY"],
}


@pytest.mark.parametrize(
    ("fields", "field", "fix"),
    [
        ({"name": None}, "name", "add it, e.g. name: validate-duckdb"),
        ({"name": "Bad Name"}, "name", "use 1-63 lower-case letters"),
        ({"description": None}, "description", "add it, e.g. description:"),
        ({"kind": "lm"}, "kind", "use one of 'container' or 'llm'"),
        ({"capabilities": []}, "capabilities", "give at least 1"),
        ({"capabilities": ["Echo"]}, "capabilities", "use lower-case letters, digits and '-'"),
        ({"capabilities": "echo"}, "capabilities", "write it as a YAML list"),
        ({"priority": "high"}, "priority", "write a whole number"),
        ({"image": None}, "image", "add it, e.g. image: python:3.12-slim"),
        ({"image": "python 3"}, "image", "write it as 'name[:tag]'"),
        ({"command": None}, "command", "add it, e.g. command: [python"),
        ({"command": "echo {text}"}, "command", "write it as a YAML list"),
        ({"command": ["echo", "{txt}"]}, "command", "did you mean 'text'?"),
        (
            {"parameters": {"text": {"description": "t", "required": False}}},
            "command",
            "wrap its item in {optional: [...]}",
        ),
        ({"parameters": {"text": {}}}, "parameters.text.description", "add it"),
        ({"parameters": {"Text": {"description": "t"}}}, "parameters", "lower-case letters"),
        (
            {"parameters": {"text": {"description": "t", "required": True, "default": "x"}}},
            "parameters.text",
            "drop 'required: true' or the default",
        ),
        (
            {"parameters": {"text": {"description": "t"}, "extra": {"description": "e"}}},
            "parameters",
            "extra declared but never used",
        ),
        ({"env": {"N": 1}}, "env.N", 'quote the value, e.g. "1"'),
        ({"env": {"1X": "a"}}, "env", "not a valid environment variable name"),
        ({"secrets": ["TOKEN", "TOKEN"]}, "secrets", "list each once"),
        ({"env": {"TOKEN": "a"}, "secrets": ["TOKEN"]}, "secrets", "keep each in one of them"),
        ({"caches": {"deps": "deps"}}, "caches", "absolute container path"),
        ({"timeout_s": 0}, "timeout_s", "use a value > 0"),
        ({"timeout": 5}, "timeout", "did you mean 'timeout_s'?"),
        ({"retry": {"attempts": 0}}, "retry.attempts", "set a value from 1 to 51"),
        ({"retry": {"attempt": 2}}, "retry.attempt", "did you mean 'attempts'?"),
        ({"retry": {"transient_exit_codes": [300]}}, "retry.transient_exit_codes.0", "<= 255"),
        ({"breaker": {"fail_max": 0}}, "breaker.fail_max", "set a value from 1 to 10000"),
        (
            {"breaker": {"reset_timeout": -1}},
            "breaker.reset_timeout",
            "set a value above 0, at most 86400",
        ),
        ({"resources": {"memory": "lots"}}, "resources.memory", "e.g. 512MiB or 2GB"),
        ({"resources": {"cpus": 2}}, "resources.cpus", "did you mean 'cpu'?"),
        ({"docs": "see the guide"}, "docs", "give a URL"),
        ({"llm": {"prompt": "hi"}}, "llm", "remove it or set kind: llm"),
        ({**LLM, "llm": None}, "llm", "add e.g. llm: {prompt:"),
        ({**LLM, "command": ["echo"]}, "command", "remove it"),
        ({**LLM, "secrets": []}, "secrets", "secrets: [ANTHROPIC_API_KEY]"),
        ({**LLM, "llm": {"prompt": "Summarize {reprt}"}}, "llm", "did you mean 'report'?"),
        ({**LLM, "image": "python:3.12-slim"}, "image", "runs no container of its own"),
        ({**LLM, "requirements": ["duckdb"]}, "requirements", "runs no container of its own"),
        (
            {**LLM, "llm": {"prompt": "p {report}", "key": "OPENAI_API_KEY"}},
            "llm",
            "key 'OPENAI_API_KEY' is not among the agent's secrets",
        ),
        (
            {**LLM, "secrets": ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]},
            "llm",
            "say which one the model uses",
        ),
        (
            {
                **LLM,
                "llm": {
                    "prompt": "p",
                    "inputs": {"r": {"kind": "directory", "value": "{rep}", "description": "r"}},
                },
            },
            "llm",
            "did you mean 'report'?",
        ),
        (
            {**LLM, "llm": {"prompt": "p {report}", "budget": {"max_api_calls": 0}}},
            "llm.budget.max_api_calls",
            ">= 1",
        ),
        (
            {
                **LLM,
                "llm": {
                    "prompt": "p {report}",
                    "outputs": {"Out": {"kind": "file", "path": "out.md", "description": "o"}},
                },
            },
            "llm.outputs",
            "not a usable input or output name",
        ),
    ],
)
def test_each_bad_field_names_the_file_the_field_and_the_fix(
    tmp_path: Path, fields: dict[str, Any], field: str, fix: str
) -> None:
    path = write_definition(tmp_path, minimal(**fields), file="agent.yaml")
    with pytest.raises(DefinitionError) as caught:
        load_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert f"field {field!r}" in message, message
    assert fix in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed\n", "is not valid YAML at line 2"),
        ("- name: x\n", "holds a list, not one agent"),
        ("", "holds nothing, not one agent"),
        ("name: a: b\n", "quote the value"),
    ],
)
def test_unusable_files_are_reported_by_name(tmp_path: Path, text: str, expected: str) -> None:
    path = write_definition(tmp_path, text, file="bad.yaml")
    with pytest.raises(DefinitionError, match=expected) as caught:
        load_file(path)
    assert str(caught.value).startswith(str(path))


def test_a_valid_definition_becomes_exactly_its_step_spec(tmp_path: Path) -> None:
    data = minimal(
        env={"MODE": "fast"},
        secrets=["TOKEN"],
        caches={"deps": "/deps"},
        requirements=["duckdb", "pyarrow==21.0.0"],
        timeout_s=12,
        retry={"attempts": 2, "backoff_s": 0.5, "transient_exit_codes": [75]},
        breaker={"fail_max": 2, "reset_timeout": 5},
        resources={"cpu": 0.5, "memory": "1.5GiB", "gpu": 1},
    )
    agent = load_file(write_definition(tmp_path, data))
    assert agent.source == tmp_path / "echo.yaml"
    spec = agent.to_step_spec(
        {"text": "hi"},
        name="step-1",
        mounts={"/data": "/in"},
        outputs={"/out": "/host/out"},
        env={"EXTRA": "1"},
        secrets={"TOKEN": "t0k"},
    )
    assert spec.name == "step-1" and spec.image == "python:3.12-slim"
    assert spec.args == ["python", "-c", "import sys; print(sys.argv[1])", "hi"]
    assert spec.env == {"MODE": "fast", "EXTRA": "1"}
    assert spec.secret_values() == ["t0k"]
    assert spec.caches == {"deps": "/deps"} and spec.timeout_s == 12
    assert spec.requirements == ["duckdb", "pyarrow==21.0.0"]
    assert spec.transient_exit_codes == frozenset({75})
    assert spec.mounts["/data"].target == "/in" and spec.outputs == {"/out": "/host/out"}
    assert agent.retry.policy() == RetryPolicy(attempts=2, backoff_s=0.5)
    policy = agent.breaker_policy()
    assert policy is not None and (policy.fail_max, policy.reset_timeout) == (2, 5.0)
    assert agent.resources.memory_bytes == int(1.5 * 2**30)
    assert agent.breaker_name == "agent:echo"


def test_without_a_breaker_section_the_environment_decides() -> None:
    assert AgentSpec.model_validate(minimal()).breaker_policy() is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "needs parameter 'text' \\(what to echo\\)"),
        ({"text": "a", "txt": "b"}, "has no parameter 'txt'; its parameters are text"),
        ({"text": True}, "parameter 'text' of agent 'echo' is bool"),
    ],
)
def test_bad_parameters_at_run_time_are_named(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        AgentSpec.model_validate(minimal()).to_step_spec(params)


def test_defaults_fill_in_and_none_means_not_given() -> None:
    agent = AgentSpec.model_validate(
        minimal(
            parameters={
                "text": {"description": "t", "default": "dflt"},
                "n": {"description": "n", "required": False},
            },
            command=["echo", "{text}", {"optional": ["-n", "{n}"]}],
        )
    )
    assert agent.render_args({"n": None}) == ["echo", "dflt"]
    assert agent.render_args({"text": Path("/x"), "n": 3}) == ["echo", "/x", "-n", "3"]


def test_env_set_differently_by_agent_and_caller_is_refused() -> None:
    agent = AgentSpec.model_validate(minimal(env={"MODE": "fast"}))
    with pytest.raises(InvalidInputError, match="env MODE set by both the agent and the caller"):
        agent.to_step_spec({"text": "x"}, env={"MODE": "slow"})


def test_a_declared_secret_without_a_value_is_refused() -> None:
    agent = AgentSpec.model_validate(minimal(secrets=["TOKEN"]))
    with pytest.raises(InvalidInputError, match="needs secret TOKEN"):
        agent.to_step_spec({"text": "x"})


def test_an_llm_agent_validates_but_has_no_command() -> None:
    agent = AgentSpec.model_validate(minimal(**LLM))
    assert agent.kind == "llm" and agent.llm is not None
    with pytest.raises(InvalidInputError, match="is an llm agent; it has no command"):
        agent.render_args({"report": "/r"})


def _llm(**llm: Any) -> dict[str, Any]:
    """An llm definition whose ``llm:`` section has ``llm`` over a minimal prompt."""
    parameters = llm.pop("parameters", {"report": {"description": "report folder"}})
    return minimal(**{**LLM, "parameters": parameters, "llm": {"prompt": "p {report}", **llm}})


def _file_input(value: str, **more: Any) -> dict[str, Any]:
    return {"f": {"kind": "file", "value": value, "description": "a file", **more}}


def _file_output(path: str) -> dict[str, Any]:
    return {"o": {"kind": "file", "path": path, "description": "an output"}}


class TestWhatAnLlmDefinitionMayReach:
    """An llm definition cannot spend without bound, write outside its output root, or send host
    files outside the working tree to a provider unless it says so (``outside_working_tree``)."""

    @pytest.mark.parametrize(
        ("llm", "field", "fix"),
        [
            ({"budget": {"max_tokens": 10**29}}, "llm.budget.max_tokens", "<= 10000000"),
            ({"budget": {"max_tokens": 10**18}}, "llm.budget.max_tokens", "<= 10000000"),
            ({"outputs": _file_output("../../../../tmp/x")}, "llm.outputs.o.path", "'..'"),
            ({"outputs": _file_output("/")}, "llm.outputs.o.path", "is an absolute path"),
            ({"outputs": _file_output("{report}/../x.md")}, "llm.outputs.o.path", "'..'"),
            ({"outputs": _file_output("~/x.md")}, "llm.outputs.o.path", "home folder"),
            ({"inputs": _file_input("~/.ssh/id_rsa")}, "llm.inputs.f", "outside_working_tree"),
            ({"inputs": _file_input("/etc/passwd")}, "llm.inputs.f", "outside_working_tree"),
            ({"inputs": _file_input("data/../../x")}, "llm.inputs.f", "'..'"),
            (
                {"inputs": _file_input("/etc/{report}", outside_working_tree=False)},
                "llm.inputs.f",
                "inside the working directory",
            ),
            (
                {
                    "parameters": {"report": {"description": "d", "default": "~/.ssh"}},
                    "inputs": {"r": {"kind": "directory", "value": "{report}", "description": "r"}},
                },
                "llm",
                "default of parameter 'report'",
            ),
            (
                {
                    "parameters": {"report": {"description": "d", "default": "/"}},
                    "outputs": _file_output("{report}/x.md"),
                },
                "llm",
                "default of parameter 'report'",
            ),
        ],
    )
    def test_a_definition_that_reaches_too_far_is_refused(
        self, tmp_path: Path, llm: dict[str, Any], field: str, fix: str
    ) -> None:
        path = write_definition(tmp_path, _llm(**llm), file="agent.yaml")
        with pytest.raises(DefinitionError) as caught:
            load_file(path)
        message = str(caught.value)
        assert f"field {field!r}" in message and fix in message, message
        assert "\n" not in message

    @pytest.mark.parametrize(
        "llm",
        [
            {"budget": {"max_tokens": 10_000_000}},
            {"outputs": _file_output("{report}/summary.md")},
            {"outputs": _file_output("results/summary.md")},
            {"inputs": _file_input("data/{report}.csv")},
            {"inputs": _file_input("~/notes.txt", outside_working_tree=True)},
            {"inputs": {"r": {"kind": "directory", "value": "{report}", "description": "r"}}},
        ],
    )
    def test_a_definition_within_its_bounds_is_accepted(
        self, tmp_path: Path, llm: dict[str, Any]
    ) -> None:
        load_file(write_definition(tmp_path, _llm(**llm), file="agent.yaml"))

    def test_a_parameter_value_cannot_move_an_output_out_of_its_root(self, tmp_path: Path) -> None:
        from agents.llm_agent import llm_step_spec

        agent = load_file(
            write_definition(
                tmp_path,
                _llm(
                    parameters={
                        "report": {"description": "folder"},
                        "name": {"description": "file name"},
                    },
                    prompt="p {report} {name}",
                    outputs=_file_output("{report}/{name}.md"),
                ),
                file="agent.yaml",
            )
        )
        spec = llm_step_spec(agent, {"report": str(tmp_path), "name": "summary"})
        assert spec.outputs["o"].path == str(tmp_path / "summary.md")
        for name in ("../../../tmp/x", "/etc/x"):
            with pytest.raises(InvalidInputError, match="must stay inside the folder report="):
                llm_step_spec(agent, {"report": str(tmp_path), "name": name})

    def test_a_root_less_input_is_read_under_the_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from agents.llm_agent import llm_step_spec

        monkeypatch.chdir(tmp_path)
        agent = load_file(
            write_definition(
                tmp_path, _llm(inputs=_file_input("data/{report}.csv")), file="agent.yaml"
            )
        )
        assert llm_step_spec(agent, {"report": "a"}).inputs["f"].value == str(
            tmp_path / "data" / "a.csv"
        )
        with pytest.raises(InvalidInputError, match="must stay inside the working directory"):
            llm_step_spec(agent, {"report": "../../../home/u/.ssh/id_rsa"})
