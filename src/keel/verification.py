"""``keel verify``: hashes, reload, golden outputs, environment, in one report."""

from __future__ import annotations

from dataclasses import dataclass

from keel.environment import (
    EnvironmentDiff,
    TrainingEnvironment,
    capture_environment,
    diff_environments,
)
from keel.errors import KeelError
from keel.golden import GoldenReport, check_golden
from keel.loading import load_version
from keel.registry import ModelMetadata, Registry
from keel.registry.storage import Progress
from keel.settings import RuntimeSettings


@dataclass(frozen=True)
class VerificationReport:
    """What was checked for one version and what failed."""

    metadata: ModelMetadata
    load_error: str | None
    golden: GoldenReport | None
    environment: EnvironmentDiff

    @property
    def ok(self) -> bool:
        return self.load_error is None and self.golden is not None and self.golden.ok

    def problems(self) -> list[str]:
        found = [self.load_error] if self.load_error else []
        if self.golden is not None:
            found += self.golden.failures()
        return found


def environment_diff(
    metadata: ModelMetadata, current: TrainingEnvironment | None = None
) -> EnvironmentDiff:
    """``current`` (by default, the running environment) against the one recorded at publish."""
    return diff_environments(
        metadata.environment, current or capture_environment(), metadata.critical_packages
    )


def verify(
    registry: Registry,
    metadata: ModelMetadata,
    settings: RuntimeSettings | None = None,
    progress: Progress | None = None,
) -> VerificationReport:
    """Check every hash, reload the model and reproduce its golden outputs.

    An environment difference alone does not fail verification: the golden
    outputs decide whether the numbers still hold. It is reported beside them.
    """
    environment = environment_diff(metadata)
    try:
        loaded = load_version(registry, metadata, settings, progress)
    except KeelError as exc:
        return VerificationReport(metadata, str(exc), None, environment)
    try:
        golden = check_golden(loaded.runtime, metadata.signature, metadata.golden)
    except KeelError as exc:
        return VerificationReport(
            metadata, f"golden inputs failed to run: {exc}", None, environment
        )
    finally:
        loaded.close()
    return VerificationReport(metadata, None, golden, environment)
