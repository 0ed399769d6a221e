"""Make ``duckdb`` importable inside a stock ``python:3.12-slim`` container.

If ``import duckdb`` fails and ``AIOP_STEP_DEPS_DIR`` is set, the requirements in
``AIOP_STEP_REQUIREMENTS`` (space-separated, e.g. ``duckdb==2.0.1``) are installed once
with ``pip install --target`` into that directory (a cache volume; a marker file per
requirements string records a finished install) and the directory is put on
``sys.path``. If duckdb still cannot be imported, the step exits with code 70.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
from pathlib import Path

from flows.steps._environment import DEPS_DIR, StepEnvironment

__all__ = ["EX_SOFTWARE", "ensure"]

EX_SOFTWARE = 70


def _importable() -> bool:
    try:
        importlib.import_module("duckdb")
    except ImportError:
        return False
    return True


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EX_SOFTWARE)


def ensure(told: StepEnvironment) -> None:
    """Import duckdb, installing ``told.requirements`` into ``told.deps_dir`` first if needed."""
    if _importable():
        return
    target = told.deps_dir
    if not target:
        _fail(f"duckdb is not installed; install it or set {DEPS_DIR}")
        return
    reqs = list(told.requirements)
    deps = Path(target)
    marker = deps / f".installed-{hashlib.sha256(' '.join(reqs).encode()).hexdigest()[:16]}"
    if str(deps) not in sys.path:
        sys.path.insert(0, str(deps))
    if not marker.exists():
        deps.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--target", str(deps), *reqs]  # fmt: skip
        env = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore"}
        done = subprocess.run(cmd, check=False, stdout=sys.stderr, env=env)
        if done.returncode != 0:
            _fail(f"pip install {' '.join(reqs)} into {deps} failed (exit {done.returncode})")
        marker.write_text(" ".join(reqs) + "\n", encoding="utf-8")
        importlib.invalidate_caches()
    if not _importable():
        _fail(f"duckdb is still not importable from {deps} ({' '.join(reqs)})")
