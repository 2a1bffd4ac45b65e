"""The exact Python environment a model was trained in, and how the running one differs."""

from __future__ import annotations

import json
import platform
import re
import sys
from dataclasses import dataclass
from importlib import metadata as importlib_metadata

from pydantic import BaseModel, ConfigDict, Field

# Libraries whose version changes can move floating-point results or parsing
# behaviour: a bump here is what turns scores into zeros without an error.
DEFAULT_CRITICAL = ("numpy", "onnxruntime", "scikit-learn", "pandas")


def normalise(name: str) -> str:
    """Canonical distribution name (PEP 503), so 'Scikit_Learn' and 'scikit-learn' match."""
    return re.sub(r"[-_.]+", "-", name).lower()


# URL schemes another machine can install from; a file:// URL names a path on the
# machine that published, which a redeploy months later cannot rely on.
REMOTE_SCHEMES = frozenset({"http", "https", "ssh", "git", "svn"})


class DirectInstall(BaseModel):
    """Where a distribution came from when not from a package index (PEP 610).

    ``url`` is a PEP 508 direct reference: ``git+https://…@<commit>`` for a VCS
    install, the archive's URL, or ``file://`` of a local checkout or file.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    editable: bool = False

    @property
    def installable(self) -> bool:
        """Whether another machine can install it from ``url`` (not a local path)."""
        scheme = self.url.partition("://")[0]
        return bool(scheme) and scheme.rpartition("+")[2] in REMOTE_SCHEMES


class TrainingEnvironment(BaseModel):
    """Interpreter, platform and every installed distribution at publish time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    python: str
    implementation: str
    platform: str
    machine: str
    packages: dict[str, str]
    # Absent from metadata written before it was recorded: every package then
    # reads as if it came from an index.
    direct_installs: dict[str, DirectInstall] = Field(default_factory=dict)

    def requirements_lock(self) -> str:
        """The environment as requirements pip can install, one per line.

        A distribution from a package index is pinned ``name==version``; one from
        a VCS or archive URL is that direct reference; one from a local checkout
        or file is a comment naming it, since no index has it (pip would look
        one up by that name and fail, or find somebody else's project).
        """
        header = f"# python {self.python} ({self.implementation}) on {self.platform}\n"
        return header + "".join(
            self._requirement(name, version) for name, version in sorted(self.packages.items())
        )

    def _requirement(self, name: str, version: str) -> str:
        direct = self.direct_installs.get(name)
        if direct is None:
            return f"{name}=={version}\n"
        if direct.installable:
            return f"{name} @ {direct.url}\n"
        source = direct.url or "a place its direct_url.json does not say"
        editable = " (editable)" if direct.editable else ""
        return (
            f"# {name}=={version} was installed from {source}{editable}, "
            "not a package index: install it from its source\n"
        )

    def without(self, names: set[str]) -> TrainingEnvironment:
        """The same environment less the distributions ``names`` (canonical names)."""
        return self.model_copy(
            update={
                "packages": {n: v for n, v in self.packages.items() if n not in names},
                "direct_installs": {
                    n: d for n, d in self.direct_installs.items() if n not in names
                },
            }
        )


def capture_environment() -> TrainingEnvironment:
    """Describe the running interpreter and every distribution it can import."""
    packages: dict[str, str] = {}
    direct_installs: dict[str, DirectInstall] = {}
    for dist in importlib_metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        name = normalise(name)
        packages[name] = dist.version
        direct = parse_direct_url(dist.read_text("direct_url.json"))
        if direct is None:
            direct_installs.pop(name, None)
        else:
            direct_installs[name] = direct
    return TrainingEnvironment(
        python=platform.python_version(),
        implementation=sys.implementation.name,
        platform=platform.platform(),
        machine=platform.machine(),
        packages=dict(sorted(packages.items())),
        direct_installs=dict(sorted(direct_installs.items())),
    )


def parse_direct_url(direct_url_json: str | None) -> DirectInstall | None:
    """Where a distribution came from, read from its ``direct_url.json`` (PEP 610).

    None when it has none: it came from a package index. A record that cannot be
    read still marks the distribution as not from an index, with an empty URL.
    """
    if direct_url_json is None:
        return None
    try:
        raw = json.loads(direct_url_json)
        url = str(raw["url"])
        vcs = raw.get("vcs_info")
        if vcs is not None:
            url = f"{vcs['vcs']}+{url}@{vcs['commit_id']}"
        if raw.get("subdirectory"):
            url += f"#subdirectory={raw['subdirectory']}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return DirectInstall(url="")
    if not url or any(c.isspace() or not c.isprintable() for c in url):
        # A URL has neither; one that had could break the lock into other lines.
        return DirectInstall(url="")
    dir_info = raw.get("dir_info")
    return DirectInstall(
        url=url, editable=isinstance(dir_info, dict) and dir_info.get("editable") is True
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
