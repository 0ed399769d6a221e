"""``aiop deploy``: the server-side objects of the scale-out topology, idempotently.

On the Prefect server the platform's commands use (``PREFECT_API_URL``, else the local server of
this ``PREFECT_HOME``: :func:`flows.server.local_server.prefect_api`) it makes sure these exist and
prints one line per object, ``created``, ``updated`` or ``unchanged`` (running it twice changes
nothing):

* the **work pool** (type ``process``, default ``aiop-process``) that
  ``prefect worker start --pool aiop-process`` takes flow runs from, on any number of machines;
* the **global concurrency limit** (default ``aiop-engine``, 4 slots) that caps the steps running
  against the execution engine at once, over every worker; the deployment names it to its runs in
  ``AIOP_ENGINE_LIMIT``;
* the **deployment** ``data-pipeline/data-pipeline`` in that pool, its code pulled from this
  checkout (``set_working_directory``): every worker machine needs the project at the same path.

It is the same deployment name that ``aiop serve`` uses, so the automations of
:mod:`flows.ops.automations` act on it either way; serve *or* deploy to a pool, not both.

Examples:
    >>> from flows.ops.deploy import main
    >>> main(["--pool", "aiop-process", "--concurrency", "4"])  # doctest: +SKIP
    work pool 'aiop-process' (process): created
    concurrency limit 'aiop-engine' (4 slots): created
    deployment 'data-pipeline/data-pipeline' (pool aiop-process): created
    0
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from adapters.settings import variable_name
from flows.ops.serve import deployment_description

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.responses import DeploymentResponse
    from prefect.deployments.runner import RunnerDeployment

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_LIMIT_NAME",
    "DEFAULT_POOL",
    "DEPLOYMENT_NAME",
    "ENGINE_LIMIT_ENV",
    "ENTRYPOINT",
    "DeployResult",
    "deploy",
    "ensure_concurrency_limit",
    "ensure_deployment",
    "ensure_work_pool",
]

#: The project root: the deployment's code source and the workers' working directory.
ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = "flows/data_pipeline/flow.py:data_pipeline"
DEPLOYMENT_NAME = "data-pipeline"
DEFAULT_POOL = "aiop-process"
DEFAULT_LIMIT_NAME = "aiop-engine"
DEFAULT_CONCURRENCY = 4
#: Names the global concurrency limit to the flow runs of the deployment.
#: The variable that names the limit to a deployment's runs (the ``engine_limit`` setting).
ENGINE_LIMIT_ENV = variable_name("engine_limit")
_TAGS = ["aiop"]

Action = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class DeployResult:
    """What :func:`deploy` did with one object on the server.

    Attributes:
        kind: ``work pool``, ``concurrency limit`` or ``deployment``.
        name: the object's name on the server.
        action: ``created``, ``updated`` or ``unchanged``.
        detail: what the object is, in a few words (shown in parentheses).
    """

    kind: str
    name: str
    action: Action
    detail: str = ""

    def line(self) -> str:
        """The line printed for this object, e.g. ``work pool 'aiop-process' (process): created``."""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.kind} {self.name!r}{detail}: {self.action}"


class DeployError(Exception):
    """An object exists on the server in a shape this command will not change for you."""


def ensure_work_pool(client: SyncPrefectClient, name: str) -> DeployResult:
    """Create the process work pool ``name`` unless it exists.

    Args:
        client: a sync Prefect client (``get_client(sync_client=True)``).
        name: the work pool's name.

    Raises:
        DeployError: a pool of that name exists with another type.
    """
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=ProcessWorker.type,
                base_job_template=ProcessWorker.get_default_base_job_template(),
                description="aiop: pipeline runs as local processes on each worker machine",
            )
        )
        return DeployResult("work pool", name, "created", ProcessWorker.type)
    if pool.type != ProcessWorker.type:
        raise DeployError(
            f"work pool {name!r} exists with type {pool.type!r}, not {ProcessWorker.type!r}; "
            f"pass another --pool name, or delete it (`prefect work-pool delete {name}`)"
        )
    return DeployResult("work pool", name, "unchanged", pool.type)


def ensure_concurrency_limit(client: SyncPrefectClient, name: str, limit: int) -> DeployResult:
    """Create the global concurrency limit ``name`` with ``limit`` slots, or set its slots.

    An inactive limit is activated: an inactive limit lets every step through.

    Args:
        client: a sync Prefect client.
        name: the limit's name.
        limit: how many steps may hold a slot at once.
    """
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectNotFound

    detail = f"{limit} slot{'s' if limit != 1 else ''}"
    try:
        existing = client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=limit, active=True)
        )
        return DeployResult("concurrency limit", name, "created", detail)
    if existing.limit == limit and existing.active:
        return DeployResult("concurrency limit", name, "unchanged", detail)
    client.update_global_concurrency_limit(
        name, GlobalConcurrencyLimitUpdate(limit=limit, active=True)
    )
    was = f"was {existing.limit}{'' if existing.active else ', inactive'}"
    return DeployResult("concurrency limit", name, "updated", f"{detail}, {was}")


#: The deployment fields this command owns; any other field set in the UI is left alone.
_OWNED_FIELDS = (
    "work_pool_name",
    "entrypoint",
    "pull_steps",
    "description",
    "tags",
    "job_variables",
    "parameter_openapi_schema",
    "enforce_parameter_schema",
)


def _wanted(deployment: RunnerDeployment) -> dict[str, Any]:
    """The owned fields of a RunnerDeployment as the server will store them."""
    storage = deployment.storage
    pull = storage.to_pull_step() if storage is not None else None
    return {
        "work_pool_name": deployment.work_pool_name,
        "entrypoint": deployment.entrypoint,
        "pull_steps": pull if isinstance(pull, list) or pull is None else [pull],
        "description": deployment.description,
        "tags": sorted(deployment.tags),
        "job_variables": deployment.job_variables,
        "parameter_openapi_schema": deployment._parameter_openapi_schema.model_dump(
            exclude_unset=True
        ),
        "enforce_parameter_schema": deployment.enforce_parameter_schema,
    }


def _stored(response: DeploymentResponse) -> dict[str, Any]:
    """The owned fields of a deployment read from the server."""
    return {
        "work_pool_name": response.work_pool_name,
        "entrypoint": response.entrypoint,
        "pull_steps": response.pull_steps,
        "description": response.description,
        "tags": sorted(response.tags),
        "job_variables": response.job_variables,
        "parameter_openapi_schema": response.parameter_openapi_schema,
        "enforce_parameter_schema": response.enforce_parameter_schema,
    }


def ensure_deployment(
    client: SyncPrefectClient, pool: str, limit_name: str, source: Path = ROOT
) -> DeployResult:
    """Deploy the data pipeline to ``pool``, its code pulled from ``source`` on the worker.

    Args:
        client: a sync Prefect client.
        pool: the work pool's name.
        limit_name: the engine concurrency limit, passed to runs in ``AIOP_ENGINE_LIMIT``.
        source: the project folder, at the same path on every worker machine.
    """
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment
    from prefect.exceptions import ObjectNotFound

    loaded = Flow.from_source(source=str(source), entrypoint=ENTRYPOINT)
    assert isinstance(loaded, Flow)
    deployment = loaded.to_deployment(
        name=DEPLOYMENT_NAME,
        work_pool_name=pool,
        description=deployment_description(loaded.name, loaded.__doc__),
        tags=list(_TAGS),
        job_variables={"env": {ENGINE_LIMIT_ENV: limit_name}},
        _sync=True,  # type: ignore[call-arg]  # a plain object, not a coroutine
    )
    assert isinstance(deployment, RunnerDeployment)
    full_name = f"{loaded.name}/{DEPLOYMENT_NAME}"
    detail = f"pool {pool}"
    try:
        existing = client.read_deployment_by_name(full_name)
    except ObjectNotFound:
        existing = None
    if existing is not None and _stored(existing) == _wanted(deployment):
        return DeployResult("deployment", full_name, "unchanged", detail)
    deployment.apply(work_pool_name=pool)
    return DeployResult(
        "deployment", full_name, "created" if existing is None else "updated", detail
    )


def deploy(
    *,
    pool: str = DEFAULT_POOL,
    concurrency: int = DEFAULT_CONCURRENCY,
    limit_name: str = DEFAULT_LIMIT_NAME,
    source: Path = ROOT,
) -> list[DeployResult]:
    """Make sure the work pool, the engine concurrency limit and the deployment exist.

    Args:
        pool: the process work pool's name.
        concurrency: slots of the engine concurrency limit.
        limit_name: the engine concurrency limit's name.
        source: the project folder the workers run the code from.

    Returns:
        One :class:`DeployResult` per object, in the order they were handled.

    Raises:
        DeployError: an object exists in a shape this command will not change.

    Examples:
        >>> for result in deploy(pool="aiop-process"):  # doctest: +SKIP
        ...     print(result.line())
        work pool 'aiop-process' (process): unchanged
        concurrency limit 'aiop-engine' (4 slots): unchanged
        deployment 'data-pipeline/data-pipeline' (pool aiop-process): unchanged
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [
            ensure_work_pool(client, pool),
            ensure_concurrency_limit(client, limit_name, concurrency),
            ensure_deployment(client, pool, limit_name, source),
        ]


if __name__ == "__main__":
    print("python -m flows.ops.deploy is now `aiop deploy`", file=sys.stderr)
    sys.exit(2)
