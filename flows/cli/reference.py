"""``aiop settings``, ``aiop errors`` and ``aiop cli-reference``: the platform's settings, the
Dagger adapter's error table and this command's own help, printed or regenerated in their
reference pages (each page is checked against them by a test).

Examples:
    $ aiop settings
    $ aiop errors --write docs/reference/errors.md
    $ aiop cli-reference --write docs/reference/cli.md
"""

from __future__ import annotations

import sys

import click

from flows.cli._preamble import EXIT_OK, load_settings_or_exit

__all__ = ["cli_reference", "errors", "settings"]


@click.command("settings", short_help="Show the settings, or their reference table.")
@click.option("--markdown", is_flag=True, help="print the configuration reference table")
@click.option(
    "--write",
    metavar="PAGE",
    help="regenerate the table inside PAGE (docs/reference/configuration.md)",
)
def settings(markdown: bool, write: str | None) -> int:
    """Show the platform's settings as this environment sets them, or the configuration
    reference table generated from them."""
    from adapters import settings as platform_settings

    if markdown:
        sys.stdout.write(platform_settings.reference_markdown())
        return EXIT_OK
    if write:
        return platform_settings.write_reference(write)
    for variable, shown in platform_settings.current_values(load_settings_or_exit()).items():
        print(f"{variable}={shown}")
    return EXIT_OK


@click.command("errors")
@click.option("--markdown", is_flag=True, help="print the table")
@click.option(
    "--write", metavar="PAGE", help="regenerate the table inside PAGE (docs/reference/errors.md)"
)
def errors(markdown: bool, write: str | None) -> int:
    """Print the Dagger adapter's error table, or regenerate it in a page."""
    from adapters.dagger.errors import TABLE, reference_markdown

    if write:
        return TABLE.write(write, reference_markdown())
    sys.stdout.write(TABLE.wrap(reference_markdown()))
    return EXIT_OK


@click.command(
    "cli-reference", short_help="Print or regenerate the help blocks of the command-line reference."
)
@click.option(
    "--write",
    metavar="PAGE",
    help="regenerate every command's help inside PAGE (docs/reference/cli.md)",
)
def cli_reference(write: str | None) -> int:
    """Print the help of every aiop command as the command-line reference shows it, or
    regenerate it in a page."""
    from flows.cli._help import blocks
    from flows.cli._help import write as write_page

    root = click.get_current_context().find_root().command
    if write:
        return write_page(root, write)
    sys.stdout.write("\n".join(block.wrap(body) for block, body in blocks(root)))
    return EXIT_OK
