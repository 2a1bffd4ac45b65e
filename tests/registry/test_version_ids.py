"""Short version ids: unique within a model, stable, and never mistaken for a git sha."""

from __future__ import annotations

import hashlib
import itertools

from hypothesis import given
from hypothesis import strategies as st

from keel.registry.version_ids import id_matches, selects, short_ids, version_id

SHA = "b08cbf8d66233a24847cc621aff9bbd67590bb97"


def _stamp(i: int) -> str:
    return f"20261206T2005{i // 1_000_000 % 60:02d}.{i % 1_000_000:06d}Z"


def test_a_short_id_is_the_first_seven_hex_digits_of_the_version_digest() -> None:
    versions = [f"{SHA}/{_stamp(i)}" for i in range(3)]
    ids = short_ids(versions)
    for version in versions:
        assert ids[version] == hashlib.sha256(version.encode()).hexdigest()[:7]
    assert len(set(ids.values())) == 3


def test_a_label_has_the_id_of_its_version() -> None:
    version = f"{SHA}/{_stamp(1)}"
    assert version_id(version.replace("/", "-", 1)) == version_id(version)
    assert id_matches(version.replace("/", "-", 1), version_id(version)[:7])


def test_short_ids_grow_until_no_other_version_shares_them() -> None:
    # Two versions whose digests share their first seven hex digits (a birthday search).
    seen: dict[str, str] = {}
    for i in itertools.count():
        version = f"{SHA}/{_stamp(i)}"
        head = version_id(version)[:7]
        if head in seen:
            twins = [seen[head], version]
            break
        seen[head] = version
    others = [f"{SHA}/{_stamp(10_000_000 + i)}" for i in range(3)]
    ids = short_ids([*twins, *others])
    first, second = (version_id(t) for t in twins)
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    assert {len(ids[t]) for t in twins} == {shared + 1}
    assert ids[twins[0]] != ids[twins[1]]
    assert all(len(ids[o]) == 7 for o in others)


def test_a_short_id_never_begins_another_versions_git_sha() -> None:
    mine = f"{SHA}/{_stamp(1)}"
    # Another commit whose sha happens to begin with all 40 first digits of my id.
    lookalike = f"{version_id(mine)[:40]}/{_stamp(2)}"
    ids = short_ids([mine, lookalike])
    assert len(ids[mine]) == 41
    assert [v for v in (mine, lookalike) if selects(v, ids[mine])] == [mine]


def test_a_version_whose_id_begins_its_own_shared_sha_still_gets_a_unique_id() -> None:
    mine = f"{SHA}/{_stamp(1)}"
    sibling_sha = version_id(mine)[:40]
    versions = [mine, f"{sibling_sha}/{_stamp(2)}", f"{sibling_sha}/{_stamp(3)}"]
    ids = short_ids(versions)
    for version in versions:
        assert [v for v in versions if selects(v, ids[version])] == [version]


_versions = st.lists(
    st.tuples(
        st.sampled_from([SHA, "0" * 40, "untracked", "b08cbf8" + "0" * 33]),
        st.integers(min_value=0, max_value=10**9),
    ).map(lambda v: f"{v[0]}/{_stamp(v[1])}"),
    min_size=1,
    max_size=40,
    unique=True,
)


@given(_versions)
def test_every_short_id_selects_exactly_its_own_version(versions: list[str]) -> None:
    ids = short_ids(versions)
    assert set(ids) == set(versions)
    for version, short in ids.items():
        assert len(short) >= 7
        assert version_id(version).startswith(short)
        assert [v for v in versions if selects(v, short)] == [version]


@given(_versions, st.integers(min_value=0, max_value=39))
def test_short_ids_only_grow_as_versions_are_added(versions: list[str], cut: int) -> None:
    before = short_ids(versions[: cut + 1])
    after = short_ids(versions)
    for version, short in before.items():
        assert after[version].startswith(short)
