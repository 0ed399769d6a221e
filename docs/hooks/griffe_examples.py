"""Griffe extension: read a Google-style ``Example:`` section as ``Examples:``.

Griffe only knows the plural; a singular ``Example:`` becomes an admonition whose ``>>>`` lines
render as nested block quotes. The code base writes ``Example:``, so the docs read it as meant.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class SingularExamples(griffe.Extension):
    """Rewrites ``Example:`` section titles to ``Examples:`` before docstrings are parsed."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        _rewrite(obj)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _rewrite(pkg)  # packages (``__init__`` docstrings) are not passed to on_object


def _rewrite(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        obj.docstring.value = _SINGULAR.sub(r"\1Examples:", obj.docstring.value)
