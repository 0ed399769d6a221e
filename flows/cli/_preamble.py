"""The one preamble of every ``aiop`` command: settings loaded once, and bad usage, an unusable
setting or unusable input said in one paragraph with exit 2, never a traceback.

Every command runs through :func:`invoke` (``aiop``, and ``python -m flows.data_pipeline``, which
is ``aiop run`` under its own name) and loads the settings with :func:`load_settings_or_exit`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from adapters.errors import InvalidInputError
from adapters.settings import Settings, load_settings

__all__ = [
    "CONTEXT_SETTINGS",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "fail",
    "invoke",
    "load_settings_or_exit",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Help is laid out for this width whatever the terminal (so the reference page shows it as is),
#: and ``-h`` is ``--help``.
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "terminal_width": 100}
#: Ctrl-C.
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad usage or unusable input: reported in one paragraph, exit 2."""


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` as one paragraph on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def load_settings_or_exit() -> Settings:
    """The platform settings from this environment; an unusable one exits 2 with its paragraph."""
    try:
        return load_settings()
    except InvalidInputError as exc:
        fail(str(exc), EXIT_USAGE)


def invoke(command: click.Command, argv: Sequence[str] | None, prog_name: str) -> int:
    """Run ``command`` on ``argv`` (default: this process's arguments) as ``prog_name``.

    Returns:
        The command's exit code: what it returned (0 when it returned nothing).

    Raises:
        SystemExit: bad usage, an unusable setting or input (2, after one paragraph on stderr), a
            failure the command reported itself (its code), or Ctrl-C (130).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # a group without its subcommand
        print(exc.format_message(), file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except click.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx is not None else prog_name
        fail(f"{exc.format_message().rstrip('.')} (see {path} --help)", EXIT_USAGE)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except click.Abort:
        print("interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except (UsageError, InvalidInputError) as exc:
        fail(str(exc), EXIT_USAGE)
    return code if isinstance(code, int) else EXIT_OK
