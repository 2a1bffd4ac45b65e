"""A log store of each kind, empty, for the tests that every backend must pass."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.logstore import LogStore, open_log_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    """An empty store: a SQLite file, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = open_log_store(url)
    yield opened
    opened.close()
