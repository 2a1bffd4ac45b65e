"""``keel env lock``: the recorded training environment as pip-installable requirements."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement

from keel.registry import ModelMetadata, Registry
from support import OnnxModel, run_keel


@pytest.fixture
def published(breast_cancer_model: OnnxModel, tmp_path: Path) -> tuple[Path, ModelMetadata]:
    """A registry holding one published version, and that version's metadata."""
    registry = tmp_path / "registry"
    signature = tmp_path / "signature.json"
    signature.write_text(breast_cancer_model.signature.to_json())
    reference = tmp_path / "validation.csv"
    breast_cancer_model.valid_frame.to_csv(reference, index=False)
    result = run_keel(
        "publish", str(breast_cancer_model.path), "--name", "cancer",
        "--signature", str(signature), "--reference", str(reference),
        "--registry", str(registry), "--alias", "production",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return registry, Registry(registry).resolve("cancer@production")


def _pins(lock: str) -> dict[str, str]:
    """Every requirement line as name -> version; each must be an exact ``==`` pin."""
    pins = {}
    for line in lock.splitlines():
        if line.startswith("#"):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        pins[requirement.name] = specifier.version
    return pins


def test_lock_prints_every_recorded_package_pinned_under_a_python_header(
    published: tuple[Path, ModelMetadata],
) -> None:
    registry, meta = published
    result = run_keel("env", "lock", "cancer@production", "--registry", str(registry))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"# {meta.ref}: trained from git {meta.source.git_sha}")
    assert lines[1].startswith(f"# python {meta.environment.python} ")
    from_index = {
        n: v
        for n, v in meta.environment.packages.items()
        if n not in meta.environment.direct_installs
    }
    assert _pins(result.stdout) == from_index
    assert "numpy" in from_index


def test_lock_names_a_distribution_from_a_local_checkout_in_a_comment_not_a_pin(
    published: tuple[Path, ModelMetadata],
) -> None:
    """keel runs here from its checkout (an editable install): no index has that ``keel``."""
    registry, meta = published
    checkout = Path(__file__).resolve().parents[2]
    assert meta.environment.direct_installs["keel"].url == checkout.as_uri()
    result = run_keel("env", "lock", meta.ref, "--registry", str(registry))
    assert result.returncode == 0, result.stderr
    version = meta.environment.packages["keel"]
    assert (
        f"# keel=={version} was installed from {checkout.as_uri()} (editable), "
        "not a package index: install it from its source"
    ) in result.stdout.splitlines()


def test_lock_leaves_out_excluded_distributions_by_canonical_name(
    published: tuple[Path, ModelMetadata],
) -> None:
    registry, meta = published
    result = run_keel(
        "env", "lock", meta.ref, "--exclude", "Keel", "-x", "Scikit_Learn",
        "--registry", str(registry),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = {
        n: v for n, v in meta.environment.packages.items() if n not in {"keel", "scikit-learn"}
    }
    assert _pins(result.stdout) == expected
    assert not [line for line in result.stdout.splitlines() if line.startswith("# keel==")]


def test_lock_of_an_unknown_version_exits_7_in_one_line(tmp_path: Path) -> None:
    result = run_keel("env", "lock", "nothing@production", "--registry", str(tmp_path))
    assert result.returncode == 7
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
