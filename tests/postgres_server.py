"""A real PostgreSQL server on loopback, started and stopped by the tests.

The prediction-log tests run against PostgreSQL itself, not a mock. The server
comes from Debian's ``postgresql`` package (``scripts/install-system-deps``
installs it); without it these tests fail, never skip. Each session gets its own
cluster in a temporary folder, on a free port, with its socket in that folder;
the package's own cluster is never touched. PostgreSQL refuses to run as root,
so under root it runs as the package's ``postgres`` user.

Fixtures (imported into ``tests/conftest.py``):

- ``postgres_server``: the running ``PostgresServer`` of the session;
- ``postgres_url``: the URL of a fresh, empty database for one test.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from glob import glob
from pathlib import Path
from types import TracebackType

import psycopg
import pytest

from prometheus_server import free_port  # one loopback-port picker for the test servers

INSTALL_HINT = "run scripts/install-system-deps (it installs Debian's postgresql package)"
USER = "keel"


def postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<major>/bin``; fails the test loudly if there is none."""
    found = glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        pytest.fail(f"PostgreSQL is not installed: {INSTALL_HINT}", pytrace=False)
    newest = max(found, key=lambda path: int(re.findall(r"\d+", path)[0]))
    return Path(newest).parent


class PostgresServer:
    """A throwaway PostgreSQL cluster: ``initdb``, then ``pg_ctl`` start and stop.

    Use as a context manager: entering creates the cluster and starts the server
    (``pg_ctl -w`` returns once it accepts connections); leaving stops it and
    removes every file. ``stop`` and ``start`` in between take the server down
    and bring it back on the same port, with its data.
    """

    def __init__(self) -> None:
        self.port = 0
        self._workdir: Path | None = None
        self._binaries = Path()
        self._as_postgres: list[str] = []

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` database, for administration."""
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    @property
    def log(self) -> str:
        """What the server has logged so far."""
        if self._workdir is None or not (self._workdir / "server.log").exists():
            return ""
        return (self._workdir / "server.log").read_text(errors="replace")

    def __enter__(self) -> PostgresServer:
        self._binaries = postgres_bin()
        self._workdir = Path(tempfile.mkdtemp(prefix="keel-postgres-"))
        try:
            self._run_as_server_user()
            self._initdb()
            self.start()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self._remove()

    def start(self) -> None:
        """Start the server (again) and wait until it accepts connections."""
        self._pg_ctl("start", "-w", "-t", "30", "-l", str(self._dir / "server.log"))

    def stop(self) -> None:
        """Stop the server at once (fast mode): open connections are cut, as in an outage."""
        if (self._dir / "data" / "postmaster.pid").exists():
            self._pg_ctl("stop", "-w", "-t", "30", "-m", "fast")

    def create_database(self) -> str:
        """A new, empty database; its name."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @property
    def _dir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("the PostgreSQL server is not set up; use it as `with`")
        return self._workdir

    def _run_as_server_user(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            server_user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail(
                f"running as root, but there is no 'postgres' user: {INSTALL_HINT}", pytrace=False
            )
        os.chown(self._dir, server_user.pw_uid, server_user.pw_gid)
        self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def _initdb(self) -> None:
        self.port = free_port()
        self._command(
            str(self._binaries / "initdb"),
            "--pgdata",
            str(self._dir / "data"),
            "--username",
            USER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",  # a test cluster need not survive a power cut
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self._dir}'",
            # Durability is not under test; these make the cluster start and write faster.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with (self._dir / "data" / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _pg_ctl(self, *arguments: str) -> None:
        self._command(
            str(self._binaries / "pg_ctl"), "--pgdata", str(self._dir / "data"), *arguments
        )

    def _command(self, *command: str) -> None:
        result = subprocess.run(
            [*self._as_postgres, *command],
            cwd=self._dir,  # the server user may not be allowed into the caller's folder
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{self.log}"
            )

    def _remove(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir)
            self._workdir = None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server; a test that stops it must start it again."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """``postgresql://`` URL of a new, empty database, dropped after the test."""
    name = postgres_server.create_database()
    yield postgres_server.url_of(name)
    postgres_server.drop_database(name)
