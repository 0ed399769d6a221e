"""MkDocs hook: render the Sphinx roles used in docstrings (``:class:`~adapters.StepSpec```) as links.

mkdocstrings renders Google docstrings as Markdown, where a role shows up literally as
``:class:<code>~adapters.StepSpec</code>``. This turns each into an optional autorefs
cross-reference: a link when the target is documented on the site, plain code otherwise. A leading
``~`` shows only the last name, as in Sphinx.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|data|attr|mod|exc|obj):<code>(~?)([\w.]+)</code>")


def _autoref(match: re.Match[str]) -> str:
    short, target = match[1], match[2]
    title = target.rsplit(".", 1)[-1] if short else target
    return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(_autoref, html)
