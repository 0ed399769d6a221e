"""``aiop``: one command with a subcommand per job, ``--help`` on each, one way to fail on bad
usage, and the old ``python -m`` entry points pointing at their new command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from flows.cli import aiop, main
from flows.cli._help import help_text

ROOT = Path(__file__).resolve().parents[3]

#: Every command a user runs, by its path under ``aiop``.
COMMANDS = [
    ["run"],
    ["agents"],
    ["agents", "list"],
    ["agents", "validate"],
    ["agents", "run"],
    ["verify"],
    ["drill"],
    ["history"],
    ["server"],
    ["server", "status"],
    ["server", "stop"],
    ["server", "env"],
    ["serve"],
    ["deploy"],
    ["automations"],
    ["automations", "install"],
    ["bench"],
    ["settings"],
    ["errors"],
    ["cli-reference"],
]

#: The entry points that moved, and the command each now names.
MOVED = {
    "agents": "aiop agents",
    "flows.server.local_server": "aiop server",
    "flows.server.process": "aiop server process",
    "flows.ops.verify": "aiop verify",
    "flows.ops.automations": "aiop automations install",
    "flows.ops.deploy": "aiop deploy",
    "flows.ops.drill": "aiop drill",
    "flows.ops.serve": "aiop serve",
    "flows.ui.history": "aiop history",
    "flows.benchmarks": "aiop bench",
    "adapters.settings": "aiop settings",
    "adapters.dagger.errors": "aiop errors",
}


def aiop_process(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_command_is_listed_and_has_its_help() -> None:
    ctx = click.Context(aiop, info_name="aiop")
    commands = [aiop.get_command(ctx, name) for name in aiop.list_commands(ctx)]
    listed = {c.name for c in commands if c is not None and not c.hidden}
    assert listed == {path[0] for path in COMMANDS}
    for path in COMMANDS:
        text = help_text(aiop, path)
        assert text.startswith(f"Usage: aiop {' '.join(path)}"), text


# aiop bench --help is the benchmarks' own help: test_bench_help_is_the_benchmarks_own
@pytest.mark.parametrize("path", [p for p in COMMANDS if p != ["bench"]], ids=" ".join)
def test_help_exits_0(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    assert capsys.readouterr().out == help_text(aiop, path) + "\n"


def test_bench_help_is_the_benchmarks_own() -> None:
    done = aiop_process("bench", "--help")
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout and "--only KEYS" in done.stdout


def test_the_installed_script_and_python_m_flows_cli_are_the_same_command() -> None:
    script = Path(sys.executable).with_name("aiop")
    done = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout == aiop_process("--help").stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["frobnicate"], "No such command 'frobnicate' (see aiop --help)"),
        (["history", "--last", "0"], "0 is not in the range x>=1 (see aiop history --help)"),
        (["run", "--rows", "x"], "'x' is not a whole number (see aiop run --help)"),
        (["run", "--input", "a.csv", "--rows", "5"], "--rows is not allowed with --input"),
        (["agents", "run"], "Missing argument 'NAME' (see aiop agents run --help)"),
        (["deploy", "--concurrency", "0"], "0 is not in the range x>=1"),
        (["drill", "--scenario", "nope"], "'nope' is not one of"),
    ],
)
def test_bad_usage_is_one_paragraph_and_exit_2(args: list[str], expected: str) -> None:
    done = aiop_process(*args)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert expected in done.stderr


def test_a_group_without_its_subcommand_shows_its_help_and_exits_2() -> None:
    done = aiop_process("agents")
    assert done.returncode == 2
    assert done.stderr.startswith("Usage: aiop agents") and "validate" in done.stderr


def test_the_main_job_keeps_its_own_name_with_the_same_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flows.data_pipeline", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: python -m flows.data_pipeline [OPTIONS]")
    assert done.stdout.split("\n", 1)[1] == help_text(aiop, ["run"]).split("\n", 1)[1] + "\n"


@pytest.mark.parametrize(("module", "command"), MOVED.items())
def test_an_old_entry_point_names_its_new_command_in_one_line(module: str, command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"python -m {module} is now `{command}`\n"
