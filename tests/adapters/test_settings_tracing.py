"""The tracing settings: the standard OpenTelemetry variables, read through the settings object."""

from __future__ import annotations

import pytest

from adapters.errors import InvalidInputError
from adapters.settings import (
    Settings,
    environment_without_settings,
    load_settings,
    settings_in_environment,
    variable_name,
)


def test_the_standard_variables_are_read_under_their_own_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-etl")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.namespace=shop,team=data%20eng")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k3y%2Cwith-comma")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")
    monkeypatch.setenv("AIOP_OTEL_EXPORTER_OTLP_ENDPOINT", "http://never-read:1")  # not a name
    config = load_settings().trace_config()
    assert config.exporter == "otlp"
    assert config.traces_url == "http://collector:4318/v1/traces"
    assert config.protocol == "http/protobuf"
    assert config.service_name == "shop-etl"
    assert config.resource == {"service.namespace": "shop", "team": "data eng"}
    assert dict(config.headers) == {"x-api-key": "k3y,with-comma"}
    assert config.timeout_s == 2.5


@pytest.mark.parametrize(
    ("settings", "exporter", "url"),
    [
        (Settings(), "none", "http://localhost:4318/v1/traces"),
        (Settings(otel_traces_exporter="otlp"), "otlp", "http://localhost:4318/v1/traces"),
        (
            Settings(otel_exporter_otlp_endpoint="http://c:4318", otel_traces_exporter="none"),
            "none",
            "http://c:4318/v1/traces",
        ),
        (
            Settings(otel_exporter_otlp_endpoint="http://c:4318", otel_sdk_disabled=True),
            "none",
            "http://c:4318/v1/traces",
        ),
        (
            Settings(
                otel_exporter_otlp_endpoint="http://c:4318",
                otel_exporter_otlp_traces_endpoint="https://t.example/otlp/traces",
            ),
            "otlp",
            "https://t.example/otlp/traces",
        ),
        (Settings(otel_traces_exporter="console"), "console", "http://localhost:4318/v1/traces"),
    ],
    ids=["nothing", "exporter-only", "exporter-none", "sdk-disabled", "traces-endpoint", "console"],
)
def test_which_exporter_and_where(settings: Settings, exporter: str, url: str) -> None:
    config = settings.trace_config()
    assert (config.exporter, config.traces_url) == (exporter, url)


def test_the_traces_variants_win_over_the_generic_ones() -> None:
    config = Settings(
        otel_exporter_otlp_endpoint="http://c:4318",
        otel_exporter_otlp_headers="a=1,b=2",
        otel_exporter_otlp_traces_headers="b=3",
        otel_exporter_otlp_timeout=1000,
        otel_exporter_otlp_traces_timeout=3000,
    ).trace_config()
    assert dict(config.headers) == {"a": "1", "b": "3"}
    assert config.timeout_s == 3.0


def test_headers_are_never_shown() -> None:
    settings = Settings(otel_exporter_otlp_headers="authorization=Bearer%20s3cr3t")
    config = settings.trace_config()
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in repr(config)
    assert "s3cr3t" not in str(settings.otel_exporter_otlp_headers)
    with pytest.raises(InvalidInputError) as caught:
        Settings(otel_exporter_otlp_headers="s3cr3t-without-a-key")
    assert "s3cr3t" not in str(caught.value)
    assert "OTEL_EXPORTER_OTLP_HEADERS" in str(caught.value)


def test_a_child_gets_the_standard_names_and_a_child_without_settings_none() -> None:
    settings = Settings(otel_exporter_otlp_endpoint="http://c:4318", trace_engine=False)
    child = settings.child_environment()
    assert child["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://c:4318"
    assert child["AIOP_TRACE_ENGINE"] == "0"
    assert "AIOP_OTEL_EXPORTER_OTLP_ENDPOINT" not in child
    base = {"PATH": "/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "TRACEPARENT": "x"}
    cleared = environment_without_settings(base)
    assert cleared["PATH"] == "/bin" and not {"OTEL_EXPORTER_OTLP_ENDPOINT", "TRACEPARENT"} & set(
        cleared
    )
    env = {"OTEL_SERVICE_NAME": "mine", "PATH": "/bin"}
    with settings_in_environment(Settings.model_construct(), env):
        assert env == {"PATH": "/bin"}
    assert env == {"OTEL_SERVICE_NAME": "mine", "PATH": "/bin"}


def test_variable_names_are_the_standard_ones() -> None:
    assert variable_name("otel_exporter_otlp_endpoint") == "OTEL_EXPORTER_OTLP_ENDPOINT"
    assert variable_name("traceparent") == "TRACEPARENT"
    assert variable_name("trace_url") == "AIOP_TRACE_URL"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"otel_exporter_otlp_timeout": -1}, "otel_exporter_otlp_timeout=-1 is not valid"),
        ({"trace_url": "http://phoenix/trace"}, "no {trace_id} placeholder"),
        ({"otel_traces_exporter": "zipkin"}, "otel_traces_exporter='zipkin' is not valid"),
    ],
)
def test_bad_values_are_one_paragraph(changes: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        load_settings(**changes)
    assert words in str(caught.value)
