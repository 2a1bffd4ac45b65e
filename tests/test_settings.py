"""Settings: defaults, a TOML config file, and environment variables over the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from keel.configuration import load_settings
from keel.errors import InvalidConfig, KeelError
from keel.settings import ServerSettings, Settings


def test_defaults_work_on_a_laptop() -> None:
    settings = Settings()
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.admin_token is None
    assert settings.batching.max_batch_size >= 1


def test_config_file_sets_models_and_nested_settings(tmp_path: Path) -> None:
    config = tmp_path / "keel.toml"
    config.write_text(
        'registry = "s3://bucket/models"\nmodels = ["churn@production"]\n'
        "[batching]\nmax_batch_size = 8\n[server]\nport = 9000\n"
    )
    settings = load_settings(config)
    assert settings.registry == "s3://bucket/models"
    assert settings.models == ["churn@production"]
    assert settings.batching.max_batch_size == 8
    assert settings.server.port == 9000


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "keel.toml"
    config.write_text("[server]\nport = 9000\n")
    monkeypatch.setenv("KEEL_SERVER__PORT", "9100")
    monkeypatch.setenv("KEEL_ADMIN_TOKEN", "secret")
    settings = load_settings(config)
    assert settings.server.port == 9100
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "secret"


@pytest.mark.parametrize(
    ("text", "message"),
    [("[server]\nport = 'eighty'\n", "invalid"), ("port = = 1", "not valid TOML")],
)
def test_a_bad_config_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "keel.toml"
    config.write_text(text)
    with pytest.raises(KeelError, match=message):
        load_settings(config)


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeelError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "key", "meant"),
    [
        ("prot = 1\n", "prot", "server.port"),
        ("[server]\nprot = 1\n", "server.prot", "server.port"),
        ("[batching]\nmax_batch_sise = 8\n", "batching.max_batch_sise", "batching.max_batch_size"),
        ("[runtime]\nintra_op_thread = 2\n", "runtime.intra_op_thread", "runtime.intra_op_threads"),
        ("[drift]\nwindow_row = 500\n", "drift.window_row", "drift.window_rows"),
        ("[drift.thresholds]\npsi_wam = 0.2\n", "drift.thresholds.psi_wam", "psi_warn"),
        ("[drift.models.churn]\npsi_alrt = 0.3\n", "drift.models.churn.psi_alrt", "psi_alert"),
        ("[shadow]\nsample = 0.5\n", "shadow.sample", "shadow.sample_rate"),
        (
            "[[shadow.targets]]\nmodel = 'a'\ncandidat = 'a@candidate'\n",
            "shadow.targets[0].candidat",
            "shadow.targets[0].candidate",
        ),
        ("[shadow.log]\nulr = 'sqlite:///x'\n", "shadow.log.ulr", "shadow.log.url"),
        ("[shadow.promotion]\nmin_hour = 1\n", "shadow.promotion.min_hour", "min_hours"),
    ],
)
def test_an_unknown_key_in_any_table_is_refused_naming_the_closest_setting(
    tmp_path: Path, text: str, key: str, meant: str
) -> None:
    config = tmp_path / "keel.toml"
    config.write_text(text)
    with pytest.raises(InvalidConfig) as refused:
        load_settings(config)
    message = str(refused.value)
    assert f"unknown keys: {key} (did you mean " in message
    assert meant in message.split("did you mean", 1)[1]


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("KEEL_SERVER__PROT", "KEEL_SERVER__PORT"),
        ("KEEL_BATCHING__MAX_BATCH_SISE", "KEEL_BATCHING__MAX_BATCH_SIZE"),
        ("KEEL_PROT", "KEEL_SERVER__PORT"),
        ("KEEL_SERVER_PORT", "KEEL_SERVER__PORT"),
        ("KEEL_PORT", "KEEL_SERVER__PORT"),  # not a Kubernetes service link: its value is a port
        ("KEEL_SHADOW__LOG__URLL", "KEEL_SHADOW__LOG__URL"),
        ("KEEL_SERVER__PORT__NUMBER", "KEEL_SERVER__PORT"),
    ],
)
@pytest.mark.parametrize("with_file", [False, True])
def test_a_keel_variable_that_names_no_setting_is_refused_naming_the_closest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, meant: str, with_file: bool
) -> None:
    config = tmp_path / "keel.toml"
    config.write_text("[server]\nport = 9000\n")
    monkeypatch.setenv(variable, "9100")
    with pytest.raises(InvalidConfig) as refused:
        load_settings(config if with_file else None)
    assert f"environment variable {variable} names no setting (did you mean {meant}?)" in str(
        refused.value
    )


def test_variables_that_are_not_settings_but_expected_are_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The harnesses' own variables, under prefixes of their own.
    for name in ("RELIABILITY_FUZZ_EXAMPLES", "HTTP_LAYER_REFS"):
        monkeypatch.setenv(name, "1")
    # What Kubernetes sets for Services named keel and keel-postgres in the namespace.
    for name, value in {
        "KEEL_SERVICE_HOST": "10.0.0.7",
        "KEEL_SERVICE_PORT": "8080",
        "KEEL_SERVICE_PORT_HTTP": "8080",
        "KEEL_PORT": "tcp://10.0.0.7:8080",
        "KEEL_PORT_8080_TCP": "tcp://10.0.0.7:8080",
        "KEEL_PORT_8080_TCP_PROTO": "tcp",
        "KEEL_PORT_8080_TCP_PORT": "8080",
        "KEEL_PORT_8080_TCP_ADDR": "10.0.0.7",
        "KEEL_POSTGRES_SERVICE_HOST": "10.0.0.8",
        "KEEL_POSTGRES_PORT": "tcp://10.0.0.8:5432",
    }.items():
        monkeypatch.setenv(name, value)
    # Settings of every shape: nested, a mapping's entry, lower case.
    monkeypatch.setenv("KEEL_DRIFT__MODELS__CHURN__PSI_WARN", "0.2")
    monkeypatch.setenv("keel_server__port", "9100")
    settings = load_settings()
    assert settings.server.port == 9100
    assert settings.drift.thresholds_for("churn").psi_warn == 0.2


@pytest.mark.parametrize("port", [0, 65536, 80000, -1])
def test_a_port_outside_1_to_65535_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: int
) -> None:
    config = tmp_path / "keel.toml"
    config.write_text(f"[server]\nport = {port}\n")
    with pytest.raises(InvalidConfig, match=rf"server\.port in {config}: Input should be"):
        load_settings(config)
    monkeypatch.setenv("KEEL_SERVER__PORT", str(port))
    with pytest.raises(InvalidConfig, match="KEEL_SERVER__PORT: Input should be"):
        load_settings()


def test_every_settings_table_forbids_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="prot"):
        ServerSettings.model_validate({"prot": 1})
    with pytest.raises(ValidationError, match="max_batch_sise"):
        Settings(batching={"max_batch_sise": 3})  # type: ignore[arg-type]
