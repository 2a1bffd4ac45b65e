"""The CPUs this process may use: its affinity, and the container's CPU quota.

``os.cpu_count()`` is the machine's; a pod limited to two CPUs on a 64-core node
sees 64 there and would start 64 workers, each throttled by the quota. The
quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``) and the affinity mask
(taskset, cpusets) both bound what the process gets; the smaller one counts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may run on at once, at least 1."""
    affinity = len(os.sched_getaffinity(0)) or os.cpu_count() or 1
    quota = cpu_quota(cgroup_root)
    if quota is None:
        return affinity
    return max(1, min(affinity, math.ceil(quota)))


def cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """This process's cgroup CPU quota in CPUs (1.5 = 150 ms per 100 ms); None if none."""
    for read in (_quota_v2, _quota_v1):
        quota = read(cgroup_root)
        if quota is not None:
            return quota
    return None


def _own_cgroup(marker: str) -> str:
    """This process's cgroup path for a hierarchy (``""`` for v2), from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (marker == "" and controllers == "") or marker in controllers.split(","):
            return path or "/"
    return "/"


def _quota_v2(root: Path) -> float | None:
    # Inside a container the cgroup namespace makes the own cgroup the root; outside one
    # (systemd slices), the own path under the root. A limit anywhere above applies too.
    quotas = []
    for folder in _upwards(root, _own_cgroup("")):
        try:
            quota, period = (folder / "cpu.max").read_text().split()
        except (OSError, ValueError):
            continue
        if quota != "max":
            quotas.append(int(quota) / int(period))
    return min(quotas, default=None)


def _quota_v1(root: Path) -> float | None:
    base = root / "cpu"
    if not base.is_dir():
        base = root / "cpu,cpuacct"
    quotas = []
    for folder in _upwards(base, _own_cgroup("cpu")):
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:
            quotas.append(quota / period)
    return min(quotas, default=None)


def _upwards(root: Path, cgroup: str) -> list[Path]:
    """``root/cgroup`` and each folder above it up to ``root``."""
    parts = [p for p in cgroup.split("/") if p]
    folders = [root.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
    return [f for f in folders if f.is_dir()]
