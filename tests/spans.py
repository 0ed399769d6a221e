"""Reading the spans a test produced as a tree (the SDK's in-memory exporter holds them)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["SpanStore", "SpanTree", "span_id", "text_of"]


def span_id(span: Any) -> str:
    """The span's id as 16 hex digits (as a ``traceparent`` writes it)."""
    return f"{span.context.span_id:016x}"


def text_of(spans: Iterable[Any]) -> str:
    """Everything the spans carry that a backend would store, as one text: names, attributes,
    events, status messages and the resource (to look for secrets in)."""
    parts: list[str] = []
    for span in spans:
        parts.append(span.name)
        parts.append(json.dumps(dict(span.attributes or {}), default=str))
        for event in span.events:
            parts.append(event.name)
            parts.append(json.dumps(dict(event.attributes or {}), default=str))
        parts.append(span.status.description or "")
        parts.append(json.dumps(dict(span.resource.attributes), default=str))
    return "\n".join(parts)


class SpanTree:
    """Finished spans by id, with their children."""

    def __init__(self, spans: Sequence[Any]) -> None:
        self.spans = list(spans)
        self.by_id = {span.context.span_id: span for span in self.spans}

    def named(self, name: str) -> list[Any]:
        """Every span called ``name``, in the order they started."""
        return sorted((s for s in self.spans if s.name == name), key=lambda s: s.start_time)

    def one(self, name: str) -> Any:
        """The one span called ``name`` (fails if there are none or several)."""
        found = self.named(name)
        assert len(found) == 1, f"{len(found)} spans named {name!r}: {self.names()}"
        return found[0]

    def parent(self, span: Any) -> Any | None:
        """The span's parent among the finished ones (None for a root or a remote parent)."""
        return self.by_id.get(span.parent.span_id) if span.parent is not None else None

    def children(self, span: Any) -> list[Any]:
        """The span's children, in the order they started."""
        found = [
            s
            for s in self.spans
            if s.parent is not None and s.parent.span_id == span.context.span_id
        ]
        return sorted(found, key=lambda s: s.start_time)

    def path(self, span: Any) -> list[str]:
        """Names from the span up to its root: ``["attempt 1", "ingest", "step ingest", ...]``."""
        names = []
        current: Any | None = span
        while current is not None:
            names.append(current.name)
            current = self.parent(current)
        return names

    def trace_ids(self) -> set[str]:
        """The trace ids of the spans (32 hex digits)."""
        return {f"{span.context.trace_id:032x}" for span in self.spans}

    def names(self) -> list[str]:
        """Every span's name, in start order."""
        return [s.name for s in sorted(self.spans, key=lambda s: s.start_time)]

    def render(self) -> str:
        """The tree as indented text (for failure messages)."""
        lines: list[str] = []

        def walk(span: Any, depth: int) -> None:
            lines.append("  " * depth + f"{span.name} {dict(span.attributes or {})}")
            for child in self.children(span):
                walk(child, depth + 1)

        for root in sorted(
            (s for s in self.spans if self.parent(s) is None), key=lambda s: s.start_time
        ):
            walk(root, 0)
        return "\n".join(lines)


class SpanStore:
    """The test's view of the in-memory exporter."""

    def __init__(self, exporter: Any) -> None:
        self._exporter = exporter

    def finished(self) -> list[Any]:
        """Every span finished so far (the batch processor flushed first)."""
        from adapters import tracing

        assert tracing.flush(), "the spans were not flushed in time"
        return list(self._exporter.get_finished_spans())

    def tree(self) -> SpanTree:
        """The finished spans as a tree."""
        return SpanTree(self.finished())
