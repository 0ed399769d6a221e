"""Who does the work: declared agents (YAML, validated on load) and the manager that picks one.

Definitions live in ``agents/definitions/*.yaml`` and in the folders of the ``agents_path`` setting; each
is an :class:`AgentSpec`. :class:`AgentManager` ranks the agents able to do a capability by health
and runs the healthiest, falling back to the next one. Importing this package never imports Prefect.

Examples:
    >>> from agents import AgentManager
    >>> manager = AgentManager.from_paths()
    >>> manager.select("validate").render_args({"input": "/aiop/in/input.csv", "output": "/aiop/out"})
    ['python', '-m', 'flows.steps', 'validate', '--input', '/aiop/in/input.csv', '--output', '/aiop/out']
"""

from agents.errors import (
    AgentNotFoundError,
    AgentParameterError,
    AgentRefusedError,
    DefinitionError,
)
from agents.health import AgentHealth, RunRecord
from agents.loader import (
    SHIPPED_DEFINITIONS,
    DefinitionProblem,
    default_paths,
    load_definitions,
    load_file,
)
from agents.manager import AgentManager
from agents.sections import LlmSection, Parameter, ResourceHints, RetrySection
from agents.spec import AgentSpec
from agents.template import CommandTemplate, OptionalArgs

__all__ = [
    "SHIPPED_DEFINITIONS",
    "AgentHealth",
    "AgentManager",
    "AgentNotFoundError",
    "AgentParameterError",
    "AgentRefusedError",
    "AgentSpec",
    "CommandTemplate",
    "DefinitionError",
    "DefinitionProblem",
    "LlmSection",
    "OptionalArgs",
    "Parameter",
    "ResourceHints",
    "RetrySection",
    "RunRecord",
    "default_paths",
    "load_definitions",
    "load_file",
]
