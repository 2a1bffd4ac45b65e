"""The exact Python environment a model was trained in, and how the running one differs."""

from __future__ import annotations

import platform
import re
import sys
from dataclasses import dataclass
from importlib import metadata as importlib_metadata

from pydantic import BaseModel, ConfigDict

# Libraries whose version changes can move floating-point results or parsing
# behaviour: a bump here is what turns scores into zeros without an error.
DEFAULT_CRITICAL = ("numpy", "onnxruntime", "scikit-learn", "pandas")


def normalise(name: str) -> str:
    """Canonical distribution name (PEP 503), so 'Scikit_Learn' and 'scikit-learn' match."""
    return re.sub(r"[-_.]+", "-", name).lower()


class TrainingEnvironment(BaseModel):
    """Interpreter, platform and every installed distribution at publish time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    python: str
    implementation: str
    platform: str
    machine: str
    packages: dict[str, str]

    def requirements_lock(self) -> str:
        """The environment as pinned requirements, one ``name==version`` per line."""
        header = f"# python {self.python} ({self.implementation}) on {self.platform}\n"
        return header + "".join(f"{n}=={v}\n" for n, v in sorted(self.packages.items()))


def capture_environment() -> TrainingEnvironment:
    """Describe the running interpreter and every distribution it can import."""
    packages: dict[str, str] = {}
    for dist in importlib_metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[normalise(name)] = dist.version
    return TrainingEnvironment(
        python=platform.python_version(),
        implementation=sys.implementation.name,
        platform=platform.platform(),
        machine=platform.machine(),
        packages=dict(sorted(packages.items())),
    )


@dataclass(frozen=True)
class PackageDifference:
    """One distribution whose version differs between two environments."""

    name: str
    recorded: str | None
    current: str | None
    critical: bool


@dataclass(frozen=True)
class EnvironmentDiff:
    """How the running environment differs from the recorded one."""

    python_recorded: str
    python_current: str
    packages: tuple[PackageDifference, ...]

    @property
    def python_differs(self) -> bool:
        return self.python_recorded.split(".")[:2] != self.python_current.split(".")[:2]

    @property
    def critical(self) -> tuple[PackageDifference, ...]:
        return tuple(p for p in self.packages if p.critical)

    @property
    def has_critical(self) -> bool:
        return self.python_differs or bool(self.critical)

    def critical_changes(self) -> list[str]:
        """Critical packages (and Python's minor version) that differ, as ``name old -> new``."""
        changed = [
            f"{p.name} {p.recorded or 'absent'} -> {p.current or 'absent'}" for p in self.critical
        ]
        if self.python_differs:
            changed.append(f"python {self.python_recorded} -> {self.python_current}")
        return changed


def diff_environments(
    recorded: TrainingEnvironment,
    current: TrainingEnvironment,
    extra_critical: tuple[str, ...] | list[str] = (),
) -> EnvironmentDiff:
    """Compare two environments; packages in the critical set are flagged."""
    critical = {normalise(n) for n in (*DEFAULT_CRITICAL, *extra_critical)}
    names = sorted(set(recorded.packages) | set(current.packages))
    differences = tuple(
        PackageDifference(
            name=name,
            recorded=recorded.packages.get(name),
            current=current.packages.get(name),
            critical=name in critical,
        )
        for name in names
        if recorded.packages.get(name) != current.packages.get(name)
    )
    return EnvironmentDiff(recorded.python, current.python, differences)
