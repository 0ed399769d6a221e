"""The agents' errors: all :class:`~adapters.errors.InvalidInputError` (permanent, never retried).

```
InvalidInputError
├── DefinitionError        a definition file cannot be used (agents.loader)
├── AgentNotFoundError     no agent has that name or capability
├── AgentParameterError    the parameters fit no agent able to do the work
└── AgentRefusedError      an agent cannot run here as configured; refused before anything ran
```

They keep the ``invalid-input`` troubleshooting anchor of their parent.

Examples:
    >>> from adapters.errors import InvalidInputError
    >>> issubclass(AgentRefusedError, InvalidInputError)
    True
"""

from __future__ import annotations

from adapters.errors import InvalidInputError

__all__ = ["AgentNotFoundError", "AgentParameterError", "AgentRefusedError", "DefinitionError"]


class DefinitionError(InvalidInputError):
    """An agent definition file cannot be used; the message names the file, the field and the fix."""


class AgentNotFoundError(InvalidInputError):
    """No agent has that name or capability; the message lists the known ones."""


class AgentParameterError(InvalidInputError):
    """The parameters fit no agent able to do the work (unknown, missing or given in part)."""


class AgentRefusedError(InvalidInputError):
    """An agent cannot run here as configured (a missing secret, no engine for an llm agent)."""
