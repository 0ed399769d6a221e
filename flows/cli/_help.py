"""The command-line reference page (``docs/reference/cli.md``): the real ``--help`` of every
``aiop`` command, generated here and checked against the page by a test."""

from __future__ import annotations

from collections.abc import Iterator

import click

from adapters.reference import Block

__all__ = ["TABLE", "help_text", "reference_markdown"]

TABLE = Block("cli-help", "aiop cli-reference")


def help_text(path: list[str]) -> str:
    """The ``--help`` output of the command ``path`` (``["agents", "run"]``), as a user sees it."""
    from flows.cli import aiop

    ctx = click.Context(aiop, info_name="aiop")
    command: click.Command = aiop
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(ctx, name)
        assert found is not None, name
        command = found
        ctx = click.Context(command, info_name=name, parent=ctx)
    return command.get_help(ctx)


def _commands(
    command: click.Command, path: list[str], ctx: click.Context
) -> Iterator[tuple[list[str], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _commands(sub, [*path, name], ctx)


def reference_markdown() -> str:
    """One section per command, in the order ``aiop --help`` lists them, each its help verbatim."""
    from flows.cli import aiop

    sections = []
    for path, _ in _commands(aiop, [], click.Context(aiop, info_name="aiop")):
        title = " ".join(["aiop", *path])
        sections.append(f"## `{title}`\n\n```text\n{help_text(path).rstrip()}\n```")
    return "\n\n".join(sections)
