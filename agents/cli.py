"""``python -m agents``: list, validate and run agents.

* ``list`` -- a table of every agent: name, kind, capabilities, priority, breaker state, recent runs.
* ``validate [PATH ...]`` -- check definitions (default: shipped + the ``agents_path`` setting); lists what
  is valid, reports each invalid file in one paragraph, exits 1 when any is invalid.
* ``run NAME --param key=value ... [--backend B]`` -- one Prefect flow run (``agent-run``) that runs
  the agent (or the healthiest agent for a capability) and prints its output; exits 1 with one
  paragraph when it fails, 2 on bad usage (an ``--output`` host folder that holds files the
  platform did not write, or a file or symbolic link it did not write, is bad usage: refused
  before anything runs).

Examples:
    $ python -m agents validate
    $ python -m agents run validate-duckdb --param input=/aiop/in/a.csv --param output=/aiop/out
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from adapters import tracing
from adapters.errors import AiopError, InvalidInputError
from adapters.settings import Settings, load_settings
from agents.loader import default_paths, load_definitions

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Usage(Exception):
    """Bad usage: one paragraph, exit 2."""


class _NoTracebackForOurErrors(logging.Filter):
    """Keeps Prefect's failure lines but drops the traceback of a platform error: its message
    already says what failed and what to do (the UI keeps the run's full state)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, AiopError):
            record.exc_info, record.exc_text = None, None
        return True


def _fail(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see python -m agents {self.prog.split()[-1]} --help)", EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m agents", description="List, validate and run agents.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="a table of every agent, its breaker state and recent runs")
    validate = sub.add_parser("validate", help="check agent definitions")
    validate.add_argument(
        "paths", nargs="*", metavar="PATH", help="definition files or folders (default: all)"
    )
    run = sub.add_parser("run", help="run one agent in a Prefect flow run")
    run.add_argument("target", metavar="NAME", help="agent name (or a capability)")
    run.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter"
    )
    run.add_argument("--backend", choices=["auto", "dagger", "local"], default=None)
    run.add_argument(
        "--mount", action="append", default=[], metavar="HOST=TARGET", help="read-only mount"
    )
    run.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="TARGET=HOST",
        help="container path to export to a host path after success",
    )
    return parser


def _pairs(items: Sequence[str], option: str, example: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _Usage(f"{option} {item!r} is not KEY=VALUE; write it as {option} {example}")
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
            raise _Usage(str(exc)) from None


def _list(settings: Settings) -> int:
    from adapters.breakers.breaker import get_breaker
    from agents.recent import read_recent_runs
    from flows.server.local_server import prefect_api  # the one choice of API every command makes

    agents, problems = load_definitions(default_paths(settings.agent_paths()))
    api = prefect_api(mode=settings.prefect_server)
    recent, why_not = asyncio.run(read_recent_runs((a.name for a in agents), api_url=api.url))
    rows = [("NAME", "KIND", "CAPABILITIES", "PRIORITY", "BREAKER", "RECENT RUNS")]
    for agent in agents:
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
            f"\n{len(problems)} definition(s) could not be loaded; see python -m agents validate",
            file=sys.stderr,
        )
    return EXIT_OK


def _validate(paths: Sequence[str], settings: Settings) -> int:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise _Usage(
            f"{missing[0]}: no such file or folder; give agent definition files or folders"
        )
    agents, problems = load_definitions(paths or default_paths(settings.agent_paths()))
    for agent in agents:
        print(f"ok     {agent.name:<28} {agent.source}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{len(agents)} valid, {len(problems)} invalid")
    return EXIT_FAILED if problems else EXIT_OK


def _run(ns: argparse.Namespace, settings: Settings) -> int:
    params = _pairs(ns.param, "--param", "input=/aiop/in/data.csv")
    mounts = _pairs(ns.mount, "--mount", "./data=/aiop/in")
    outputs = _pairs(ns.output, "--output", "/aiop/out=./out")
    mounts = {str(Path(host).resolve()): target for host, target in mounts.items()}
    # Made absolute, never resolved: a link at an output path is refused where it stands, not
    # followed to whatever it points at (ADR 0013).
    outputs = {target: os.path.normpath(Path(host).absolute()) for target, host in outputs.items()}
    _check_outputs(ns.output)
    from agents.manager import AgentManager

    manager = AgentManager.from_settings(settings)
    backend = ns.backend or settings.backend
    try:  # usage problems are found before any flow run starts
        candidates = manager.candidates(ns.target, params)
    except InvalidInputError as exc:
        raise _Usage(str(exc)) from None
    if any(agent.secrets for agent in candidates):
        # Steps with secrets are cached under the installation key: a bad key stops us here.
        from flows.runtime.installation_key import check_installation_key

        try:
            note = check_installation_key(settings.installation_key_file)
        except InvalidInputError as exc:
            raise _Usage(str(exc)) from None
        if note:
            print(note, file=sys.stderr)
    refusals = [asyncio.run(manager.check_ready(a, backend))[1] for a in candidates]
    if all(refusals):  # nothing could run: say why without starting a flow run
        why = "; ".join(
            f"agent {a.name!r}: {'; '.join(r)}" for a, r in zip(candidates, refusals, strict=True)
        )
        _fail(f"agent run {ns.target!r} refused before anything ran: {why}", EXIT_FAILED)

    from flows.ui.console import docs_url, quiet_prefect_defaults, run_flow_quietly

    quiet_prefect_defaults(settings)
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logging.getLogger(name).addFilter(_NoTracebackForOurErrors())
    tracing.configure(settings.trace_config())  # before the flow run: its span is the root
    from flows.runtime.agent_run import agent_run

    with tracing.continued():  # a TRACEPARENT set for this command is the run's parent
        state: Any = run_flow_quietly(
            lambda: agent_run(
                ns.target,
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
        _fail(
            f"agent run {ns.target!r} failed: {message}. Read more:"
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
    for target, host in done["outputs"].items():
        print(f"output {target} -> {host}", file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m agents``; returns the exit code."""
    ns = _parser().parse_args(argv)
    try:
        settings = load_settings()
        if ns.command == "list":
            return _list(settings)
        if ns.command == "validate":
            return _validate(ns.paths, settings)
        return _run(ns, settings)
    except _Usage as exc:
        _fail(str(exc), EXIT_USAGE)
    except InvalidInputError as exc:
        _fail(str(exc), EXIT_USAGE)
