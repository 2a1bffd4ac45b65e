"""The training environment record and the diff that flags numerics-critical changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from keel.environment import (
    DirectInstall,
    TrainingEnvironment,
    capture_environment,
    diff_environments,
    normalise,
    parse_direct_url,
)

CHECKOUT = Path(__file__).resolve().parents[1]


def test_capture_records_every_installed_distribution() -> None:
    environment = capture_environment()
    assert environment.packages["numpy"] == np.__version__
    assert "onnxruntime" in environment.packages
    assert "pydantic" in environment.packages
    assert f"numpy=={np.__version__}\n" in environment.requirements_lock()


def test_identical_environments_have_no_difference() -> None:
    environment = capture_environment()
    diff = diff_environments(environment, environment)
    assert diff.packages == ()
    assert not diff.has_critical


def test_numerics_libraries_are_critical_and_others_are_not() -> None:
    current = capture_environment()
    recorded = current.model_copy(
        update={"packages": {**current.packages, "numpy": "1.21.0", "rich": "1.0.0"}}
    )
    diff = diff_environments(recorded, current)
    flags = {p.name: p.critical for p in diff.packages}
    assert flags == {"numpy": True, "rich": False}
    assert diff.has_critical


def test_publisher_declared_packages_are_critical_too() -> None:
    current = capture_environment()
    recorded = current.model_copy(update={"packages": {**current.packages, "rich": "1.0.0"}})
    assert diff_environments(recorded, current, ["Rich"]).critical[0].name == "rich"


def test_a_missing_package_and_a_python_change_are_reported() -> None:
    current = capture_environment()
    packages = dict(current.packages)
    del packages["onnxruntime"]
    recorded = current.model_copy(update={"packages": packages, "python": "3.9.1"})
    diff = diff_environments(recorded, current)
    assert diff.python_differs
    assert diff.critical[0].name == "onnxruntime"
    assert diff.critical[0].recorded is None


def test_names_are_normalised() -> None:
    assert normalise("Scikit_Learn") == normalise("scikit.learn") == "scikit-learn"


def test_capture_records_where_a_distribution_not_from_an_index_came_from() -> None:
    """keel runs here from its checkout, as ``make setup`` installs it; numpy from an index."""
    environment = capture_environment()
    assert environment.direct_installs["keel"] == DirectInstall(
        url=CHECKOUT.as_uri(), editable=True
    )
    assert "numpy" not in environment.direct_installs
    assert not environment.direct_installs["keel"].installable


def test_pep_610_records_become_pep_508_direct_references() -> None:
    vcs = {"url": "https://example.com/o/r.git", "vcs_info": {"vcs": "git", "commit_id": "abc1"}}
    assert parse_direct_url(json.dumps(vcs)) == DirectInstall(
        url="git+https://example.com/o/r.git@abc1"
    )
    archive = {"url": "https://example.com/x-1.0.tar.gz", "archive_info": {}, "subdirectory": "py"}
    assert parse_direct_url(json.dumps(archive)) == DirectInstall(
        url="https://example.com/x-1.0.tar.gz#subdirectory=py"
    )
    checkout = {"url": "file:///src/x", "dir_info": {"editable": True}}
    assert parse_direct_url(json.dumps(checkout)) == DirectInstall(
        url="file:///src/x", editable=True
    )
    assert parse_direct_url(None) is None
    assert parse_direct_url("{not json") == DirectInstall(url="")


@given(st.one_of(st.text(), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
).map(json.dumps)))  # fmt: skip
def test_any_direct_url_json_is_read_into_exactly_one_lock_line(text: str) -> None:
    direct = parse_direct_url(text)
    assert isinstance(direct, DirectInstall)
    environment = TrainingEnvironment(
        python="3.11.7",
        implementation="cpython",
        platform="Linux",
        machine="x86_64",
        packages={"x": "1"},
        direct_installs={"x": direct},
    )
    # Whatever the record says, it cannot add a requirement to the lock.
    (_, line) = environment.requirements_lock().splitlines()
    assert line.startswith(("x @ ", "# x==1 was installed from "))


def test_lock_pins_index_packages_references_urls_and_comments_out_local_sources() -> None:
    environment = TrainingEnvironment(
        python="3.11.7",
        implementation="cpython",
        platform="Linux",
        machine="x86_64",
        packages={"numpy": "2.4.6", "lib": "1.0", "trainer": "0.3", "tool": "2.0", "odd": "1"},
        direct_installs={
            "lib": DirectInstall(url="git+https://example.com/lib.git@abc1"),
            "trainer": DirectInstall(url="file:///src/trainer", editable=True),
            "tool": DirectInstall(url="file:///wheels/tool-2.0-py3-none-any.whl"),
            "odd": DirectInstall(url=""),
        },
    )
    assert environment.requirements_lock().splitlines()[1:] == [
        "lib @ git+https://example.com/lib.git@abc1",
        "numpy==2.4.6",
        "# odd==1 was installed from a place its direct_url.json does not say, "
        "not a package index: install it from its source",
        "# tool==2.0 was installed from file:///wheels/tool-2.0-py3-none-any.whl, "
        "not a package index: install it from its source",
        "# trainer==0.3 was installed from file:///src/trainer (editable), "
        "not a package index: install it from its source",
    ]
    assert environment.without({"trainer", "lib"}).requirements_lock().splitlines()[1:] == [
        "numpy==2.4.6",
        "# odd==1 was installed from a place its direct_url.json does not say, "
        "not a package index: install it from its source",
        "# tool==2.0 was installed from file:///wheels/tool-2.0-py3-none-any.whl, "
        "not a package index: install it from its source",
    ]


def test_metadata_from_before_direct_installs_were_recorded_pins_every_package() -> None:
    recorded = {
        "python": "3.11.7",
        "implementation": "cpython",
        "platform": "Linux",
        "machine": "x86_64",
        "packages": {"keel": "0.1.0", "numpy": "2.4.6"},
    }
    environment = TrainingEnvironment.model_validate(recorded)
    assert environment.direct_installs == {}
    assert environment.requirements_lock().splitlines()[1:] == ["keel==0.1.0", "numpy==2.4.6"]
