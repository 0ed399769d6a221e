"""``aiop agents``: list, validate and run agents.

* ``list`` -- a table of every agent: name, kind, capabilities, priority, breaker state, recent runs.
* ``validate [PATH ...]`` -- check definitions (default: shipped + the ``agents_path`` setting); lists what
  is valid, reports each invalid file in one paragraph, exits 1 when any is invalid.
* ``run NAME --param key=value ... [--backend B]`` -- one Prefect flow run (``agent-run``) that runs
  the agent (or the healthiest agent for a capability) and prints its output; exits 1 with one
  paragraph when it fails, 2 on bad usage (an ``--output`` host folder that holds files the
  platform did not write, or a file or symbolic link it did not write, is bad usage: refused
  before anything runs).

Examples:
    $ aiop agents validate
    $ aiop agents run validate-duckdb --param input=/aiop/in/a.csv --param output=/aiop/out
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from adapters.errors import AiopError, InvalidInputError
from adapters.settings import Settings, variable_name
from flows.cli._preamble import EXIT_FAILED, EXIT_OK, UsageError, fail, load_settings_or_exit

__all__ = ["agents"]


class _NoTracebackForOurErrors(logging.Filter):
    """Keeps Prefect's failure lines but drops the traceback of a platform error: its message
    already says what failed and what to do (the UI keeps the run's full state)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, AiopError):
            record.exc_info, record.exc_text = None, None
        return True


@click.group("agents")
def agents() -> None:
    """List, validate and run agents."""


@agents.command("list")
def list_agents() -> int:
    """A table of every agent, its breaker state and recent runs."""
    from adapters.breakers.breaker import get_breaker
    from agents.loader import default_paths, load_definitions
    from agents.recent import read_recent_runs
    from flows.server.local_server import prefect_api  # the one choice of API every command makes

    settings = load_settings_or_exit()
    found, problems = load_definitions(default_paths(settings.agent_paths()))
    api = prefect_api(mode=settings.prefect_server)
    recent, why_not = asyncio.run(read_recent_runs((a.name for a in found), api_url=api.url))
    rows = [("NAME", "KIND", "CAPABILITIES", "PRIORITY", "BREAKER", "RECENT RUNS")]
    for agent in found:
        state = get_breaker(
            agent.breaker_name,
            agent.breaker_policy(),
            default_policy=settings.breaker_policy(),
            redis_url=settings.redis_url(),
        ).state
        runs = recent.get(agent.name)
        rows.append(
            (
                agent.name,
                agent.kind,
                ", ".join(agent.capabilities),
                str(agent.priority),
                state,
                runs.text if runs else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if why_not:
        print(f"\nrecent runs: {why_not}")
    if problems:
        print(
            f"\n{len(problems)} definition(s) could not be loaded; see aiop agents validate",
            file=sys.stderr,
        )
    return EXIT_OK


@agents.command("validate")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
def validate(paths: tuple[str, ...]) -> int:
    """Check agent definitions: the files or folders PATH (default: all)."""
    from agents.loader import default_paths, load_definitions

    settings = load_settings_or_exit()
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(
            f"{missing[0]}: no such file or folder; give agent definition files or folders"
        )
    found, problems = load_definitions(paths or default_paths(settings.agent_paths()))
    for agent in found:
        print(f"ok     {agent.name:<28} {agent.source}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{len(found)} valid, {len(problems)} invalid")
    return EXIT_FAILED if problems else EXIT_OK


def _pairs(items: Sequence[str], option: str, example: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {item!r} is not KEY=VALUE; write it as {option} {example}")
        pairs[key] = value
    return pairs


def _check_outputs(items: Sequence[str]) -> None:
    """Refuse, before any flow run, an output the platform may not write: a folder of files it
    did not write, a file it did not write, a symbolic link, an untrusted result folder."""
    from adapters.ownership import check_destination

    for item in items:
        target, _, host = item.partition("=")
        try:
            check_destination(Path(host), label=f"--output {target}={host}", folder=False)
        except InvalidInputError as exc:
            raise UsageError(str(exc)) from None


@agents.command("run")
@click.argument("target", metavar="NAME")
@click.option("--param", multiple=True, metavar="KEY=VALUE", help="a parameter (repeatable)")
@click.option(
    "--backend",
    type=click.Choice(["auto", "dagger", "local"]),
    default=None,
    help=f"where the agent runs (default {variable_name('backend')}, else auto)",
)
@click.option("--mount", multiple=True, metavar="HOST=TARGET", help="read-only mount (repeatable)")
@click.option(
    "--output",
    multiple=True,
    metavar="TARGET=HOST",
    help="container path to export to a host path after success (repeatable)",
)
def run(
    target: str,
    param: tuple[str, ...],
    backend: str | None,
    mount: tuple[str, ...],
    output: tuple[str, ...],
) -> int:
    """Run one agent NAME (or the healthiest agent for a capability) in a Prefect flow run."""
    settings = load_settings_or_exit()
    params = _pairs(param, "--param", "input=/aiop/in/data.csv")
    mounts = _pairs(mount, "--mount", "./data=/aiop/in")
    outputs = _pairs(output, "--output", "/aiop/out=./out")
    mounts = {str(Path(host).resolve()): target for host, target in mounts.items()}
    # Made absolute, never resolved: a link at an output path is refused where it stands, not
    # followed to whatever it points at (ADR 0013).
    outputs = {t: os.path.normpath(Path(host).absolute()) for t, host in outputs.items()}
    _check_outputs(output)
    return _run(target, params, backend or settings.backend, mounts, outputs, settings)


def _run(
    target: str,
    params: dict[str, str],
    backend: str,
    mounts: dict[str, str],
    outputs: dict[str, str],
    settings: Settings,
) -> int:
    from adapters import tracing
    from agents.manager import AgentManager

    manager = AgentManager.from_settings(settings)
    candidates = manager.candidates(target, params)  # usage problems: before any flow run
    if any(agent.secrets for agent in candidates):
        # Steps with secrets are cached under the installation key: a bad key stops us here.
        from flows.runtime.installation_key import check_installation_key

        note = check_installation_key(settings.installation_key_file)
        if note:
            print(note, file=sys.stderr)
    refusals = [asyncio.run(manager.check_ready(a, backend))[1] for a in candidates]
    if all(refusals):  # nothing could run: say why without starting a flow run
        why = "; ".join(
            f"agent {a.name!r}: {'; '.join(r)}" for a, r in zip(candidates, refusals, strict=True)
        )
        fail(f"agent run {target!r} refused before anything ran: {why}", EXIT_FAILED)

    from flows.ui.console import docs_url, quiet_prefect_defaults, run_flow_quietly

    quiet_prefect_defaults(settings)
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logging.getLogger(name).addFilter(_NoTracebackForOurErrors())
    tracing.configure(settings.trace_config())  # before the flow run: its span is the root
    from flows.runtime.agent_run import agent_run

    with tracing.continued():  # a TRACEPARENT set for this command is the run's parent
        state: Any = run_flow_quietly(
            lambda: agent_run(
                target,
                params,
                backend,
                mounts or None,
                outputs or None,
                settings=settings,
                return_state=True,
            ),
            debug=settings.debug,
        )
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        if isinstance(error, AiopError):
            anchor = error.docs_anchor
            message = str(error)
        else:
            anchor, message = "troubleshooting", f"{state.name}: {state.message}"
        fail(
            f"agent run {target!r} failed: {message}. Read more:"
            f" {docs_url('troubleshooting/')}#{anchor}",
            EXIT_FAILED,
        )
    done: dict[str, Any] = state.result()
    sys.stdout.write(done["stdout"])
    print(
        f"agent {done['agent']!r}: {done['state']} in {done['duration_s']:.2f} s (exit"
        f" {done['exit_code']}, backend {done['backend']}, attempts {done['attempts']})",
        file=sys.stderr,
    )
    if "tokens" in done:  # an llm agent: what the model cost
        print(
            f"model {done['model']}: {done['api_calls']} API calls,"
            f" {done['tokens']['total_tokens']} tokens",
            file=sys.stderr,
        )
    for t, host in done["outputs"].items():
        print(f"output {t} -> {host}", file=sys.stderr)
    return EXIT_OK
