"""``aiop deploy``: the pool, the engine limit and the deployment, idempotently."""

from __future__ import annotations

import pytest

from flows.ops.deploy import (
    DEFAULT_LIMIT_NAME,
    DEPLOYMENT_NAME,
    ENGINE_LIMIT_ENV,
    ENTRYPOINT,
    ROOT,
    DeployResult,
    deploy,
)


def main(args: list[str]) -> int:
    """``aiop deploy ARGS``'s exit code."""
    from flows.cli import main as aiop

    try:
        return aiop(["deploy", *args])
    except SystemExit as exc:
        return int(str(exc.code))


class TestWithoutServer:
    def test_exits_2_with_how_to_start_a_server(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        assert main([]) == 2
        err = capsys.readouterr().err
        assert "prefect server start" in err and "PREFECT_API_URL" in err

    def test_rejects_a_concurrency_below_one(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["--concurrency", "0"]) == 2
        assert "'--concurrency': 0 is not in the range x>=1" in capsys.readouterr().err

    def test_result_line_names_the_object_and_what_was_done(self) -> None:
        line = DeployResult("work pool", "aiop-process", "created", "process").line()
        assert line == "work pool 'aiop-process' (process): created"


@pytest.mark.prefect
class TestOnAServer:
    POOL = "aiop-test-deploy"
    LIMIT = "aiop-test-engine"

    def actions(self, **kwargs: object) -> dict[str, str]:
        results = deploy(pool=self.POOL, limit_name=self.LIMIT, **kwargs)  # type: ignore[arg-type]
        return {r.kind: r.action for r in results}

    def test_second_run_changes_nothing_and_a_new_limit_is_an_update(
        self, prefect_api_url: str
    ) -> None:
        from prefect.client.orchestration import get_client

        first = self.actions(concurrency=3)
        assert first["work pool"] == "created"
        assert first["concurrency limit"] == "created"
        # created, or updated when another test applied a deployment of the same name before
        assert first["deployment"] in {"created", "updated"}

        assert set(self.actions(concurrency=3).values()) == {"unchanged"}
        assert self.actions(concurrency=5)["concurrency limit"] == "updated"

        with get_client(sync_client=True) as client:
            pool = client.read_work_pool(self.POOL)
            limit = client.read_global_concurrency_limit_by_name(self.LIMIT)
            deployment = client.read_deployment_by_name(f"data-pipeline/{DEPLOYMENT_NAME}")
        assert pool.type == "process"
        assert (limit.limit, limit.active) == (5, True)
        assert deployment.work_pool_name == self.POOL
        assert deployment.entrypoint == ENTRYPOINT
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
        ]
        assert deployment.job_variables == {"env": {ENGINE_LIMIT_ENV: self.LIMIT}}
        assert "**Parameters**" in (deployment.description or "")

    def test_a_pool_of_another_type_is_an_error_not_a_change(
        self, prefect_api_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate

        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name="aiop-test-other-type", type="kubernetes"))
        assert main(["--pool", "aiop-test-other-type", "--limit-name", DEFAULT_LIMIT_NAME]) == 1
        err = capsys.readouterr().err
        assert "type 'kubernetes', not 'process'" in err
