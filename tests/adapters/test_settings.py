"""The settings object: every AIOP_ variable typed, defaulted, described; bad values in one paragraph."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import InvalidInputError, RetryPolicy
from adapters.breakers.policy import BreakerPolicy
from adapters.settings import (
    Settings,
    load_settings,
    setting_variables,
    settings_in_environment,
)
from flows.cli import main as aiop_main
from flows.cli.run import main as pipeline_main


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No AIOP_ variable of the caller's environment leaks into a test of the reading itself."""
    for variable in setting_variables():
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


class TestReadingTheEnvironment:
    def test_nothing_set_gives_the_documented_defaults(
        self, clean_environment: pytest.MonkeyPatch
    ) -> None:
        settings = load_settings()
        assert settings == Settings.model_construct()
        assert settings.backend == "auto"
        assert settings.work_dir == Path(".aiop/work")
        assert settings.retry_policy() == RetryPolicy()
        assert settings.breaker_policy() == BreakerPolicy()
        assert (settings.dagger_provision_timeout_s, settings.dagger_first_run_timeout_s) == (
            60.0,
            600.0,
        )
        assert settings.debug is False and settings.chaos is None

    def test_each_variable_is_read_and_typed(self, clean_environment: pytest.MonkeyPatch) -> None:
        values = {
            "AIOP_BACKEND": " Local ",
            "AIOP_RETRY_ATTEMPTS": "5",
            "AIOP_RETRY_BUDGET_S": "none",
            "AIOP_BREAKER_RESET_TIMEOUT": "2.5",
            "AIOP_CACHE_DIR": "/tmp/caches",
            "AIOP_DEBUG": "1",
            "AIOP_ENGINE_LIMIT": "aiop-engine",
            "AIOP_DAGGER_PROVISION_TIMEOUT_S": "120",
            "AIOP_CHAOS": "step=ingest,kind=timeout",
        }
        for key, value in values.items():
            clean_environment.setenv(key, value)
        settings = load_settings()
        assert settings.backend == "local"
        assert settings.retry_policy().attempts == 5 and settings.retry_policy().budget_s is None
        assert settings.breaker_policy().reset_timeout == 2.5
        assert settings.cache_dir == Path("/tmp/caches")
        assert settings.debug is True
        assert settings.engine_limit == "aiop-engine"
        assert settings.dagger_provision_timeout_s == 120.0
        plan = settings.chaos_plan()
        assert plan is not None and [f.describe() for f in plan.faults] == [
            "step=ingest,kind=timeout,times=1"
        ]

    def test_an_empty_variable_counts_as_unset(self, clean_environment: pytest.MonkeyPatch) -> None:
        clean_environment.setenv("AIOP_RETRY_ATTEMPTS", "")
        clean_environment.setenv("AIOP_CHAOS", "  ")
        settings = load_settings()
        assert settings.retry.attempts == 3 and settings.chaos is None

    def test_the_object_is_frozen(self) -> None:
        with pytest.raises(ValueError, match="frozen"):
            Settings().backend = "local"  # type: ignore[misc]

    def test_a_redis_url_with_a_password_is_never_shown(self) -> None:
        settings = Settings(breaker_redis_url="redis://:hunter2@cache:6379/0")
        assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
        assert "hunter2" not in settings.model_dump_json()
        assert settings.redis_url() == "redis://:hunter2@cache:6379/0"


class TestBadValues:
    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("AIOP_BACKEND", "docker"),
            ("AIOP_RETRY_ATTEMPTS", "many"),
            ("AIOP_RETRY_ATTEMPTS", "0"),
            ("AIOP_RETRY_JITTER", "lots"),
            ("AIOP_BREAKER_FAIL_MAX", "2.5"),
            ("AIOP_BREAKER_RESET_TIMEOUT", "nan"),
            ("AIOP_DAGGER_FIRST_RUN_TIMEOUT_S", "-1"),
            ("AIOP_PREFECT_SERVER", "remote"),
            ("AIOP_DEBUG", "perhaps"),
        ],
    )
    def test_one_paragraph_names_the_variable_the_value_and_the_fix(
        self, clean_environment: pytest.MonkeyPatch, variable: str, value: str
    ) -> None:
        clean_environment.setenv(variable, value)
        with pytest.raises(InvalidInputError) as info:
            load_settings()
        message = str(info.value)
        assert f"{variable}={value!r} is not valid" in message
        assert "unset it" in message and "reference/configuration" in message
        assert "\n" not in message

    def test_a_bad_fault_plan_names_the_variable(
        self, clean_environment: pytest.MonkeyPatch
    ) -> None:
        clean_environment.setenv("AIOP_CHAOS", "kind=meteor")
        with pytest.raises(InvalidInputError, match="AIOP_CHAOS, fault 1"):
            load_settings()

    def test_a_bad_secret_value_is_not_repeated(
        self, clean_environment: pytest.MonkeyPatch
    ) -> None:
        clean_environment.setenv("AIOP_BREAKER_REDIS_URL", "hunter2")
        clean_environment.setenv("AIOP_RETRY_ATTEMPTS", "x")
        with pytest.raises(InvalidInputError) as info:
            load_settings(breaker_redis_url=123)
        assert "hunter2" not in str(info.value) and "123" not in str(info.value)

    def test_a_bad_change_in_code_names_the_field(self) -> None:
        with pytest.raises(InvalidInputError, match=r"retry\.attempts=0 is not valid"):
            Settings().with_changes(retry={"attempts": 0})


class TestDerivedValues:
    def test_set_retry_settings_win_over_an_agents_policy_and_unset_ones_keep_it(self) -> None:
        agent = RetryPolicy(attempts=2, backoff_s=5.0, jitter=0.0)
        policy = Settings(retry={"backoff_s": 0.1}).retry_policy(agent)
        assert (policy.attempts, policy.backoff_s, policy.jitter) == (2, 0.1, 0.0)

    def test_breaker_settings_apply_over_a_base(self) -> None:
        base = BreakerPolicy(fail_max=9, reset_timeout=1.0)
        assert Settings(breaker={"success_threshold": 2}).breaker_policy(base) == BreakerPolicy(
            fail_max=9, reset_timeout=1.0, success_threshold=2
        )

    def test_with_changes_reads_no_environment_and_keeps_what_was_set(
        self, clean_environment: pytest.MonkeyPatch
    ) -> None:
        clean_environment.setenv("AIOP_BACKEND", "local")
        changed = Settings.model_construct().with_changes(retry={"attempts": 2})
        assert changed.backend == "auto" and changed.retry.attempts == 2
        assert changed.model_fields_set == {"retry"} and changed.retry.model_fields_set == {
            "attempts"
        }
        assert changed.retry_policy(RetryPolicy(backoff_s=9.0)).backoff_s == 9.0

    def test_a_child_gets_exactly_the_settings_that_differ_from_the_defaults(
        self, clean_environment: pytest.MonkeyPatch
    ) -> None:
        settings = Settings(backend="local", breaker_redis_url="redis://:pw@r:6379/0")
        env = settings.environment_for_child(
            {"PATH": "/bin", "AIOP_CHAOS": "kind=timeout"}, retry={"budget_s": None}
        )
        assert env == {
            "PATH": "/bin",
            "AIOP_BACKEND": "local",
            "AIOP_BREAKER_REDIS_URL": "redis://:pw@r:6379/0",
            "AIOP_RETRY_BUDGET_S": "none",
        }

    def test_what_a_child_is_given_reads_back_as_the_same_settings(
        self, clean_environment: pytest.MonkeyPatch
    ) -> None:
        given = Settings(
            backend="dagger",
            retry={"budget_s": None, "factor": 3},
            debug=True,
            cache_dir=Path("/c"),
        )
        for key, value in given.child_environment().items():
            clean_environment.setenv(key, value)
        assert load_settings() == given

    def test_settings_in_environment_sets_and_restores(
        self, clean_environment: pytest.MonkeyPatch
    ) -> None:
        env = {"AIOP_CHAOS": "kind=timeout", "HOME": "/h"}
        with settings_in_environment(Settings(retry={"attempts": 1}), env):
            assert env == {"HOME": "/h", "AIOP_RETRY_ATTEMPTS": "1"}
        assert env == {"AIOP_CHAOS": "kind=timeout", "HOME": "/h"}

    def test_every_field_is_described_for_the_reference(self) -> None:
        for name, info in Settings.model_fields.items():
            assert info.description and len(info.description) > 20, name


class TestCommandLines:
    def test_the_settings_command_shows_values_with_the_secret_masked(
        self, clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        clean_environment.setenv("AIOP_BREAKER_REDIS_URL", "redis://:s3cret@127.0.0.1:6379/0")
        clean_environment.setenv("AIOP_BACKEND", "local")
        assert aiop_main(["settings"]) == 0
        out = capsys.readouterr().out
        assert "AIOP_BACKEND=local\n" in out and "AIOP_BREAKER_REDIS_URL=**********\n" in out
        assert "AIOP_ENGINE_LIMIT=(unset)\n" in out and "s3cret" not in out

    @pytest.mark.parametrize(
        "argv",
        [
            ["run", "--rows", "10"],
            ["agents", "list"],
            ["agents", "validate"],
            ["agents", "run", "validate-duckdb"],
            ["verify", "--no-docs"],
            ["drill"],
            ["history"],
            ["serve"],
            ["deploy"],
            ["automations", "install"],
            ["settings"],
        ],
        ids=" ".join,
    )
    def test_a_bad_value_stops_every_command_with_exit_2_and_one_paragraph(
        self,
        clean_environment: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        argv: list[str],
    ) -> None:
        clean_environment.setenv("AIOP_BREAKER_FAIL_MAX", "lots")
        with pytest.raises(SystemExit) as info:
            aiop_main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2
        assert err.startswith("error: AIOP_BREAKER_FAIL_MAX='lots' is not valid")
        assert "Traceback" not in err and err.count("\n") == 1


class TestBounds:
    """Every numeric setting has a lower and an upper bound, checked when the settings are read:
    a value past what Prefect, the clock or the breaker can use stops the command (exit 2) before
    any work, instead of passing validation and crashing inside a run."""

    @pytest.mark.parametrize(
        ("variable", "value", "bounds"),
        [
            ("AIOP_RETRY_ATTEMPTS", "52", "from 1 to 51"),
            ("AIOP_RETRY_ATTEMPTS", "2000", "from 1 to 51"),
            ("AIOP_RETRY_BACKOFF_S", "1e300", "from 0 to 86400"),
            ("AIOP_RETRY_MAX_BACKOFF_S", "1e300", "from 0 to 86400"),
            ("AIOP_RETRY_FACTOR", "1e300", "from 1 to 100"),
            ("AIOP_RETRY_JITTER", "5", "from 0 to 1"),
            ("AIOP_RETRY_BUDGET_S", "1e300", "above 0, at most 604800"),
            ("AIOP_BREAKER_RESET_TIMEOUT", "1e300", "above 0, at most 86400"),
            ("AIOP_BREAKER_FAIL_MAX", "100000000", "from 1 to 10000"),
            ("AIOP_DAGGER_FIRST_RUN_TIMEOUT_S", "1e300", "above 0, at most 86400"),
            ("AIOP_DAGGER_PROVISION_TIMEOUT_S", "1e12", "above 0, at most 86400"),
        ],
    )
    def test_a_value_past_its_bound_is_refused_naming_the_bounds(
        self, clean_environment: pytest.MonkeyPatch, variable: str, value: str, bounds: str
    ) -> None:
        clean_environment.setenv(variable, value)
        with pytest.raises(InvalidInputError) as info:
            load_settings()
        message = str(info.value)
        assert f"{variable}={value!r} is not valid" in message
        assert f"set a value {bounds} (default" in message and "\n" not in message

    def test_every_numeric_setting_has_a_lower_and_an_upper_bound(self) -> None:
        import annotated_types

        for name, info in setting_variables().items():
            if not {"int", "float"} & set(str(info.annotation).replace("|", " ").split()):
                continue
            kinds = {type(m) for m in info.metadata}
            assert kinds & {annotated_types.Ge, annotated_types.Gt}, name
            assert kinds & {annotated_types.Le, annotated_types.Lt}, name

    def test_the_largest_values_allowed_give_a_policy_prefect_accepts(self) -> None:
        from prefect import task

        settings = Settings(
            retry={"attempts": 51, "backoff_s": 86_400, "factor": 100, "max_backoff_s": 86_400}
        )
        policy = settings.retry_policy()
        delays = policy.delays()
        assert len(delays) == 50 and max(delays) == 86_400

        def step() -> None:
            """A task body; only its options matter here."""

        task(retries=policy.retries, retry_delay_seconds=delays, retry_jitter_factor=1.0)(step)

    @pytest.mark.parametrize("value", ["52", "2000"])
    def test_the_main_job_stops_at_a_retry_count_prefect_refuses_before_any_run(
        self, clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
    ) -> None:
        clean_environment.setenv("AIOP_RETRY_ATTEMPTS", value)
        with pytest.raises(SystemExit) as info:
            pipeline_main(["--rows", "10"])
        err = capsys.readouterr().err
        assert info.value.code == 2
        assert err.startswith(f"error: AIOP_RETRY_ATTEMPTS={value!r} is not valid")
        assert "from 1 to 51" in err and "Traceback" not in err and err.count("\n") == 1
