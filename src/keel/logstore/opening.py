"""From the log URL in the settings to a store."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from keel.errors import InvalidConfig
from keel.logstore.sqlite_store import SQLiteStore
from keel.logstore.store import LogStore

ACCEPTED = "sqlite:///RELATIVE/PATH, sqlite:////ABSOLUTE/PATH, postgresql://USER@HOST/DB"
POSTGRES_MISSING = (
    "a postgresql:// prediction log needs psycopg, which keel installs as an extra: "
    "pip install 'keel[postgres]'"
)


def open_log_store(url: str) -> LogStore:
    """The store ``url`` names; it connects on first use, so opening never waits on I/O.

    ``sqlite:///path`` is relative to the working folder, ``sqlite:////path``
    absolute; ``postgresql://`` (or ``postgres://``) takes any libpq URL.
    """
    backend, target = _parse(url)
    if backend == "sqlite":
        return SQLiteStore(target)
    # Imported here so that keel runs without psycopg where no one asks for it.
    from keel.logstore.postgres_store import PostgresStore

    return PostgresStore(target)


def check_log_store_url(url: str) -> None:
    """Raise ``KeelError`` (InvalidConfig for a URL of the wrong form) unless ``url`` opens.

    Connects to nothing.
    """
    # Stores connect on first use, so opening one and closing it unused checks the URL
    # (and that psycopg is installed) without touching the file or the server.
    open_log_store(url).close()


def _parse(url: str) -> tuple[Literal["sqlite", "postgresql"], str]:
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if separator and scheme == "sqlite":
        # The third slash ends an (empty) host; the path follows it.
        if not rest.startswith("/") or rest == "/":
            raise InvalidConfig(
                f"prediction log URL '{redacted_url(url)}' has no file path: write "
                "sqlite:///relative/path or sqlite:////absolute/path"
            )
        return "sqlite", unquote(rest[1:])
    if separator and scheme in ("postgresql", "postgres"):
        return "postgresql", f"{scheme}://{rest}"  # libpq knows the scheme in lower case only
    raise InvalidConfig(
        f"prediction log URL '{redacted_url(url)}' is not supported; accepted: {ACCEPTED}"
    )


def redacted_url(url: str) -> str:
    """``url`` with any password (``user:PASSWORD@`` or ``?password=``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a malformed host: show none of what follows the scheme
        return f"{url.partition('://')[0]}://***"
    netloc, query = parts.netloc, parts.query
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    fields = parse_qsl(query, keep_blank_values=True)
    if any(key == "password" for key, _ in fields):
        query = urlencode([(k, "***" if k == "password" else v) for k, v in fields], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # rebuilt, sqlite:///path would lose a slash
    return urlunsplit(parts._replace(netloc=netloc, query=query))
