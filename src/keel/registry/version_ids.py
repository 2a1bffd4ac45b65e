"""Short version ids: what a person types instead of ``{git_sha}/{timestamp}``.

Every version published from one commit shares its 40-character git sha, so a
prefix of the sha cannot tell them apart. A version's *id* is instead the
sha256 of its full version string, in hex; its *short id* is the shortest
prefix of that id, :data:`MIN_SHORT_ID` characters or more, that names no other
version of the same model, the way git abbreviates commit ids. The digest is
spread evenly, so seven characters almost always suffice, and they stay the
same as versions are added unless a newcomer happens to share them.

A selector of hex digits (at least :data:`MIN_SHORT_ID`) names every version
whose id *or* git sha begins with it, so the sha prefixes people typed before
short ids existed still work. Short ids are chosen under that same rule: a
version's short id begins no other version's id and no other version's sha.
"""

from __future__ import annotations

import functools
import hashlib
from bisect import bisect_left
from collections.abc import Iterable

from keel.registry.names import MIN_SHORT_ID, looks_like_id


@functools.lru_cache(maxsize=4096)
def version_id(version: str) -> str:
    """The id of a version (``sha/timestamp``, or its label ``sha-timestamp``): 64 hex digits."""
    return hashlib.sha256(_unlabelled(version).encode()).hexdigest()


def id_matches(version: str, selector: str) -> bool:
    """Whether ``selector`` (7 or more hex digits) begins the id of ``version`` (or its label)."""
    return looks_like_id(selector) and version_id(version).startswith(selector)


def selects(version: str, selector: str) -> bool:
    """Whether a version selector names ``version``: the one rule for every place.

    ``sha/timestamp`` matches by prefixes of both parts; hex digits match a
    prefix of the version's id or of its git sha. Either side may be spelled as
    the label servers use (``sha-timestamp``).
    """
    version, selector = _unlabelled(version), _unlabelled(selector)
    sha, _, stamp = version.partition("/")
    if "/" in selector:
        want_sha, _, want_stamp = selector.partition("/")
        return sha.startswith(want_sha) and stamp.startswith(want_stamp)
    return sha.startswith(selector) or id_matches(version, selector)


def short_ids(versions: Iterable[str]) -> dict[str, str]:
    """The short id of each version among ``versions`` (those of one model).

    Each is the shortest prefix of the version's id, at least ``MIN_SHORT_ID``
    long, that begins no other version's id or git sha, so that :func:`selects`
    picks exactly that version. The longest common prefix of a string with any
    member of a sorted list is the one it shares with a neighbour, so sorting
    every id and sha once makes this O(n log n).
    """
    versions = list(dict.fromkeys(versions))
    keys: list[tuple[str, int]] = []
    for owner, version in enumerate(versions):
        keys.append((version_id(version), owner))
        sha = version.partition("/")[0]
        if looks_like_id(sha):
            keys.append((sha, owner))
    keys.sort()
    found = {}
    for owner, version in enumerate(versions):
        own = version_id(version)
        at = bisect_left(keys, (own, owner))
        shared = max(
            (_shared_length(own, key) for key in _nearest_of_others(keys, at, owner)),
            default=0,
        )
        found[version] = own[: max(MIN_SHORT_ID, shared + 1)]
    return found


def _nearest_of_others(keys: list[tuple[str, int]], at: int, owner: int) -> list[str]:
    """The keys just before and just after position ``at`` that belong to another version."""
    nearest = []
    for step in (-1, 1):
        index = at + step
        while 0 <= index < len(keys) and keys[index][1] == owner:
            index += step
        if 0 <= index < len(keys):
            nearest.append(keys[index][0])
    return nearest


def _shared_length(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` have in common."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


def _unlabelled(version: str) -> str:
    # The label a server puts in URLs and headers joins the two parts with '-'; a
    # git sha (or 'untracked') holds no '-', so the first one is the joint.
    return version if "/" in version else version.replace("-", "/", 1)
