"""``aiop verify``: the integration check users run first (:mod:`flows.ops.verify`).

Examples:
    $ aiop verify
"""

from __future__ import annotations

import click

from flows.cli._preamble import EXIT_FAILED, EXIT_OK, load_settings_or_exit

__all__ = ["verify"]


@click.command("verify")
@click.option("--no-docs", is_flag=True, help="skip the docs build check")
def verify(no_docs: bool) -> int:
    """Check this machine can run the platform.

    One row per check (PASS, FAIL, WARN or SKIP) with what it found and, when it did not pass,
    the fix. Exits 1 only when a required check fails; a missing Dagger engine is reported, not
    required.
    """
    settings = load_settings_or_exit()
    from flows.ops.verify import render, run_checks
    from flows.ui.console import quiet_prefect_defaults

    api = quiet_prefect_defaults(settings)  # the API every command uses; links to its docs
    checks = run_checks(include_docs=not no_docs, settings=settings, api=api)
    print(render(checks))
    failed = [c for c in checks if c.status == "FAIL" and c.required]
    print()
    if failed:
        print(f"{len(failed)} required check(s) failed: {', '.join(c.name for c in failed)}.")
        return EXIT_FAILED
    print("All required checks passed.")
    return EXIT_OK
