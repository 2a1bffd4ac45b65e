"""Settings: defaults, a TOML config file, and environment variables over the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import KeelError
from keel.settings import Settings, load_settings


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
