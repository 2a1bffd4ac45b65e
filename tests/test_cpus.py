"""The CPUs keel may use: affinity, and the container's CPU quota in either cgroup version."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keel import cpus


def _v2(root: Path, cpu_max: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(cpu_max)
    return root


def _v1(root: Path, quota: int, period: int) -> Path:
    folder = root / "cpu"
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (folder / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # As inside a container, where the cgroup namespace makes this process's cgroup "/".
    monkeypatch.setattr(cpus, "_own_cgroup", lambda marker: "/")


def test_a_v2_quota_in_cpus(tmp_path: Path) -> None:
    assert cpus.cpu_quota(_v2(tmp_path, "150000 100000\n")) == 1.5


def test_no_v2_quota(tmp_path: Path) -> None:
    assert cpus.cpu_quota(_v2(tmp_path, "max 100000\n")) is None


def test_a_v1_quota(tmp_path: Path) -> None:
    assert cpus.cpu_quota(_v1(tmp_path, 250000, 100000)) == 2.5


def test_no_v1_quota(tmp_path: Path) -> None:
    assert cpus.cpu_quota(_v1(tmp_path, -1, 100000)) is None


def test_the_quota_rounds_up_and_never_exceeds_the_affinity(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert cpus.usable_cpus(_v2(tmp_path / "half", "50000 100000")) == 1
    assert cpus.usable_cpus(_v2(tmp_path / "many", f"{(affinity + 8) * 100000} 100000")) == (
        affinity
    )
    assert cpus.usable_cpus(tmp_path / "none") == affinity


def test_a_limit_above_this_cgroup_applies_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpus, "_own_cgroup", lambda marker: "/kubepods/pod1/container")
    _v2(tmp_path, "max 100000")
    _v2(tmp_path / "kubepods" / "pod1", "100000 100000")
    _v2(tmp_path / "kubepods" / "pod1" / "container", "max 100000")
    assert cpus.cpu_quota(tmp_path) == 1.0
