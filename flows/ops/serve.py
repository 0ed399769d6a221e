"""``aiop serve``: serve the platform's flows as deployments, with docs in the UI.

Prefect shows a deployment's description as markdown on its page; each description here is the flow's
docstring followed by links into the docs site (the ``docs_url`` setting): the flow's guide, the
troubleshooting page and a docs search. Serving needs a Prefect server that keeps running: the one
:func:`flows.server.local_server.prefect_api` picks (``PREFECT_API_URL``, or the local server).
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any

from flows.ui.console import docs_url

__all__ = ["deployment_description", "deployments"]

_GUIDES = {"data-pipeline": ("The data pipeline guide", "guides/data-pipeline/")}


def deployment_description(flow_name: str, docstring: str | None) -> str:
    """The flow's docstring (first paragraph and Args) followed by links into the docs."""
    title, page = _GUIDES.get(flow_name, ("The guides", "guides/"))
    text = inspect.cleandoc(docstring or "").split("\n\nReturns:")[0].strip()
    intro, _, args = text.partition("\n\nArgs:\n")
    if args:
        items = re.sub(r"\n\s{5,}", " ", args)  # join continuation lines
        bullets = [
            re.sub(r"^\s*(\w+):", r"- `\1`:", line) for line in items.splitlines() if line.strip()
        ]
        text = intro + "\n\n**Parameters**\n\n" + "\n".join(bullets)
    return (
        f"{text}\n\n"
        f"**Docs**: [{title}]({docs_url(page)}) · "
        f"[Troubleshooting by error class]({docs_url('troubleshooting/')}) · "
        f"[Search the docs]({docs_url('')}?q={flow_name.replace('-', '+')})\n"
    )


def deployments() -> list[Any]:
    """Every flow of the platform as a deployment ready to serve."""
    from flows.data_pipeline.flow import data_pipeline

    return [
        data_pipeline.to_deployment(
            name="data-pipeline",
            description=deployment_description(data_pipeline.name, data_pipeline.__doc__),
            tags=["aiop"],
            _sync=True,  # type: ignore[call-arg]  # a plain object even from async code
        )
    ]


if __name__ == "__main__":
    print("python -m flows.ops.serve is now `aiop serve`", file=sys.stderr)
    sys.exit(2)
