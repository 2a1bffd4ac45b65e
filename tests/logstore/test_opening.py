"""Log URLs: which ones open which store, and what a wrong one is told."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from logstore_support import make_record

from keel.errors import InvalidConfig, KeelError
from keel.logstore import SQLiteStore, check_log_store_url, open_log_store
from keel.logstore.opening import redacted_url
from keel.logstore.postgres_store import PostgresStore


def test_three_slashes_open_a_sqlite_file_relative_to_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_log_store("sqlite:///logs/predictions.sqlite")
    assert isinstance(store, SQLiteStore)
    store.write([make_record(1)])
    store.close()

    assert (tmp_path / "logs" / "predictions.sqlite").is_file()
    assert store.url == "sqlite:///logs/predictions.sqlite"


def test_four_slashes_open_an_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    store = open_log_store(f"sqlite:///{path}")
    assert isinstance(store, SQLiteStore)
    assert store.path == path
    assert store.url == f"sqlite:////{os.fspath(path).lstrip('/')}"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "PostgreSQL"])
def test_postgres_urls_open_a_postgres_store_without_connecting(scheme: str) -> None:
    # Nothing listens there: opening must not try to connect.
    store = open_log_store(f"{scheme}://keel:secret@127.0.0.1:1/log")

    assert isinstance(store, PostgresStore)
    assert "secret" not in store.url


@pytest.mark.parametrize(
    "url",
    ["mysql://keel:secret@db/log", "predictions.sqlite", "sqlite:predictions.sqlite"],
)
def test_other_schemes_are_refused_naming_the_url_and_what_is_accepted(url: str) -> None:
    with pytest.raises(InvalidConfig, match="not supported; accepted: sqlite:///") as raised:
        open_log_store(url)
    # A wrong setting or flag: the CLI exits 2, as for any other.
    with pytest.raises(InvalidConfig):
        check_log_store_url(url)
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/log.sqlite"])
def test_a_sqlite_url_without_a_path_says_how_to_write_one(url: str) -> None:
    with pytest.raises(KeelError, match=r"no file path: write sqlite:///relative/path"):
        check_log_store_url(url)


def test_a_malformed_postgres_url_is_refused_up_front_without_its_password() -> None:
    with pytest.raises(KeelError, match="malformed: invalid URI query parameter") as raised:
        check_log_store_url("postgresql://keel:secret@db/log?colour=blue")
    assert "secret" not in str(raised.value)


def test_accepted_urls_pass_the_check_which_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    check_log_store_url("sqlite:///logs/predictions.sqlite")
    assert list(tmp_path.iterdir()) == []
    check_log_store_url("postgresql://keel@db.internal:5432/log?sslmode=require")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://keel:s3cr%40t@db:5432/log", "postgresql://keel:***@db:5432/log"),
        ("postgresql://db/log?user=k&password=pw", "postgresql://db/log?user=k&password=***"),
        ("postgresql://keel@db/log", "postgresql://keel@db/log"),
        ("sqlite:////var/log/keel.sqlite", "sqlite:////var/log/keel.sqlite"),
        ("mysql://keel:pw@[db/log", "mysql://***"),
    ],
)
def test_passwords_are_hidden_where_urls_are_shown(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
