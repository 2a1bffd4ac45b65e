"""The training environment record and the diff that flags numerics-critical changes."""

from __future__ import annotations

import numpy as np

from keel.environment import capture_environment, diff_environments, normalise


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
