"""The scale-out topology on loopback services, for the integration test and the load benchmark.

:func:`topology` starts, in this order, and tears down in reverse, whatever happens:

1. a fresh PostgreSQL database (unique name, dropped at the end);
2. ``prefect server start`` on a free port, backed by that database, with the task-run recorder
   flushing small batches every second (docs/guides/scale-out.md has why);
3. ``aiop deploy`` (work pool, engine concurrency limit, deployment);
4. one ``prefect worker start`` per requested worker, each polling the pool's ``default`` queue and
   a queue named after itself, so a run can be sent to one worker on purpose;

and deletes every breaker key (``aiop:breaker:*``) in its Redis database before and after: give
it a database no one else uses (the test uses 14, the benchmark 15). Every process is started in its
own session and stopped by its process group (a worker's flow runs and their steps go with it).

Not collected by pytest (no ``test_`` prefix); no Prefect import at module level, so the benchmark
can set ``PREFECT_*`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.processes import free_port, start, stop, wait_http

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PREFECT = str(Path(sys.executable).with_name("prefect"))

#: The PostgreSQL server to create the fresh database on (any database of it, to connect first).
POSTGRES_URL = os.environ.get("AIOP_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres")
POOL = "aiop-process"
LIMIT_NAME = "aiop-engine"
DEPLOYMENT = "data-pipeline/data-pipeline"
#: The breaker every pipeline step on the local backend goes through.
BREAKER = "engine:local"
#: Every breaker's keys (engine:*, agent:*): the Redis database must be one of the tests' own.
BREAKER_KEYS = "aiop:breaker:*"

#: Small task-run recorder batches flushed every second (PLATFORM.md: 21 s -> 2 s for 1,000 tasks).
RECORDER_SETTINGS = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


@dataclass
class Topology:
    """What :func:`topology` started.

    Attributes:
        api_url: the server's API URL (``PREFECT_API_URL``).
        database: the fresh database's name.
        redis_url: where the workers' breakers keep their state.
        base: the folder holding logs, Prefect homes and whatever the caller puts there.
        deploy_output: what ``aiop deploy`` printed.
        workers: worker name -> its process.
    """

    api_url: str
    database: str
    redis_url: str
    base: Path
    deploy_output: str = ""
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log(self, name: str) -> str:
        """The tail of a process's log (``server``, ``deploy``, or a worker's name)."""
        path = self.base / "logs" / f"{name}.log"
        if not path.exists():
            return f"(no {name} log)"
        return path.read_text(encoding="utf-8", errors="replace")[-6000:]


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _admin(statement: str) -> None:
    """Run one statement on the PostgreSQL server (outside a transaction, as CREATE DATABASE needs)."""
    import asyncpg  # type: ignore[import-untyped]  # ships with prefect, untyped

    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def delete_breaker_keys(redis_url: str) -> int:
    """Delete every breaker's shared state in ``redis_url`` (a database of its own); how many keys."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=BREAKER_KEYS))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


def breaker_state(redis_url: str) -> str | None:
    """The ``engine:local`` breaker's state as stored in Redis (None: never written)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        raw = client.get(f"aiop:breaker:{BREAKER}:state")
    finally:
        client.close()
    return raw.decode() if isinstance(raw, bytes) else None


def _prefect_env(base: Path, name: str, api_url: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "AIOP_CHAOS", "AIOP_BREAKER_", "AIOP_RETRY_"))
        and k not in ("AIOP_BACKEND", "AIOP_ENGINE_LIMIT")
    }
    env.update(
        PREFECT_HOME=str(base / "homes" / name),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return env


def _create_queues(api_url: str, names: Sequence[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        for name in names:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_work_queue(name=name, work_pool_name=POOL)


def _wait_workers(api_url: str, names: Sequence[str], timeout_s: float) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + timeout_s
    seen: set[str] = set()
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            workers = client.read_workers_for_work_pool(POOL)
            seen = {w.name for w in workers if w.status.value == "ONLINE"}
            if set(names) <= seen:
                return
            time.sleep(0.5)
    raise TimeoutError(f"workers {sorted(set(names) - seen)} did not come online")


@contextlib.contextmanager
def topology(
    base: Path,
    *,
    redis_url: str,
    workers: Sequence[str] = ("w1", "w2"),
    worker_limit: int | None = None,
    concurrency: int = 4,
    server_timeout_s: float = 120.0,
) -> Iterator[Topology]:
    """Start the topology under ``base``; stop and delete all of it on exit.

    Args:
        base: an empty folder for logs and Prefect homes.
        redis_url: the Redis database the workers' breakers share, one of the caller's own (its
            ``aiop:breaker:*`` keys are deleted before and after).
        workers: the workers' names; each also polls a work queue of the same name.
        worker_limit: flow runs each worker runs at once (``--limit``; None: no limit).
        concurrency: slots of the engine concurrency limit.
        server_timeout_s: how long the server may take to answer ``/api/health``.
    """
    database = f"aiop_scale_{uuid.uuid4().hex[:12]}"
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    top = Topology(api_url=api_url, database=database, redis_url=redis_url, base=base)
    logs = base / "logs"
    delete_breaker_keys(redis_url)
    _admin(f'CREATE DATABASE "{database}"')
    server: subprocess.Popen[bytes] | None = None
    try:
        server_env = _prefect_env(base, "server", None)
        server_env.update(
            PREFECT_SERVER_DATABASE_CONNECTION_URL=_with_database(
                POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://", 1), database
            ),
            PREFECT_UI_ENABLED="false",
            **RECORDER_SETTINGS,
        )
        server = start(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            server_env,
            logs / "server.log",
        )
        wait_http(f"{api_url}/health", server, logs / "server.log", server_timeout_s)

        deploy = subprocess.run(
            [PYTHON, "-m", "flows.cli", "deploy", "--concurrency", str(concurrency)],
            cwd=ROOT,
            env=_prefect_env(base, "deploy", api_url),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        top.deploy_output = deploy.stdout
        if deploy.returncode != 0:
            raise RuntimeError(
                f"aiop deploy exited {deploy.returncode}:\n{deploy.stdout}{deploy.stderr}"
            )
        _create_queues(api_url, workers)

        for name in workers:
            env = _prefect_env(base, name, api_url)
            env.update(
                AIOP_BACKEND="local",
                AIOP_BREAKER_REDIS_URL=redis_url,
                PREFECT_WORKER_QUERY_SECONDS="1",
                PREFECT_WORKER_HEARTBEAT_SECONDS="5",
            )
            args = [PREFECT, "worker", "start", "--pool", POOL, "--name", name]
            args += ["--work-queue", "default", "--work-queue", name]
            if worker_limit is not None:
                args += ["--limit", str(worker_limit)]
            top.workers[name] = start(args, env, logs / f"{name}.log")
        _wait_workers(api_url, workers, timeout_s=60)
        yield top
    finally:
        for proc in top.workers.values():
            stop(proc)
        if server is not None:
            stop(server)
        with contextlib.suppress(Exception):
            delete_breaker_keys(redis_url)
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
