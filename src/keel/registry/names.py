"""Model, alias and version names, and the references that pick a version.

Names become path components in the registry, so they are validated before
they touch storage: no separators, no dots at the start, nothing a path trick
could use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keel.errors import InvalidName

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SHA = re.compile(r"[0-9a-f]{1,40}|untracked")
_TIMESTAMP_PREFIX = re.compile(r"[0-9TZ.]{0,32}")
# A server's label of a version: ``sha/timestamp`` as one path segment, ``sha-timestamp``.
_LABEL = re.compile(r"([0-9a-f]{40}|untracked)-([0-9TZ.]{0,32})")

LATEST = "latest"
DEFAULT_ALIAS = "production"
MIN_SHORT_ID = 7
"""Fewest hex digits that name a version (a short id, or a git sha prefix); fewer is a word."""


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a safe model name, else raise :class:`InvalidName`."""
    return _check(name, "model name")


def check_alias_name(alias: str) -> str:
    """Return ``alias`` if it is a safe alias name (and not the reserved ``latest``)."""
    _check(alias, "alias")
    if alias == LATEST:
        raise InvalidName("'latest' always means the newest version and cannot be set as an alias")
    if "/" in alias or looks_like_id(alias) or _LABEL.fullmatch(alias):
        raise InvalidName(f"alias {alias!r} could be mistaken for a version id; pick a word")
    return alias


def _check(value: str, what: str) -> str:
    if not _NAME.fullmatch(value) or ".." in value:
        raise InvalidName(
            f"{what} {value!r} is not allowed: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit, and no '..'"
        )
    return value


def looks_like_id(value: str) -> bool:
    """Whether ``value`` is hex digits enough to name a version (short id or git sha prefix)."""
    return len(value) >= MIN_SHORT_ID and re.fullmatch(r"[0-9a-f]+", value) is not None


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``name@selector`` reference; ``selector`` is an alias, ``latest`` or a version.

    A version selector is ``sha/timestamp`` (prefixes of either part) or hex digits:
    a short id, or a prefix of a git sha.
    """

    name: str
    selector: str

    @property
    def is_version(self) -> bool:
        """True when the selector names a version rather than an alias or ``latest``."""
        return "/" in self.selector or looks_like_id(self.selector)

    def __str__(self) -> str:
        return f"{self.name}@{self.selector}"


def parse_ref(text: str) -> ModelRef:
    """Parse ``name``, ``name@alias``, ``name@latest`` or ``name@<version>``.

    A version is ``<sha>/<timestamp>`` (prefixes of either part), its label
    ``<sha>-<timestamp>`` (as servers show it), or a short id.
    """
    name, _, selector = text.partition("@")
    check_model_name(name)
    if not selector:
        return ModelRef(name, DEFAULT_ALIAS)
    label = _LABEL.fullmatch(selector)
    if label is not None:
        selector = f"{label[1]}/{label[2]}"
    if "/" in selector:
        sha, _, stamp = selector.partition("/")
        if not _SHA.fullmatch(sha) or not _TIMESTAMP_PREFIX.fullmatch(stamp) or ".." in stamp:
            raise InvalidName(
                f"version {selector!r} is not '<git sha>/<timestamp>' (hex sha, then a "
                "timestamp like 20261125T074502.123456Z; unique prefixes of either are fine)"
            )
        return ModelRef(name, selector)
    if selector != LATEST and not looks_like_id(selector):
        check_alias_name(selector)
    return ModelRef(name, selector)
