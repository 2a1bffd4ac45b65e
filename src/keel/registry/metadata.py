"""The contents of ``metadata.json``: everything needed to verify and reproduce a version."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keel.environment import TrainingEnvironment
from keel.golden import GoldenSet
from keel.reference import ReferenceStats
from keel.signature import Signature

METADATA_FILE = "metadata.json"
METADATA_SCHEMA_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileDigest(_Frozen):
    """Hash and size of one stored file, checked before the file is used."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class ArtifactInfo(_Frozen):
    """Which file holds the model and how to run it."""

    path: str
    format: Literal["onnx", "safetensors"]
    forward: str | None = Field(
        default=None,
        description="Name of the forward implementation (shipped with keel) for safetensors.",
    )
    forward_config: dict[str, Any] = Field(default_factory=dict)


class SourceInfo(_Frozen):
    """The training code that made the model."""

    git_sha: str = Field(description="Full git commit sha, or 'untracked' outside git.")
    git_dirty: bool = Field(description="True when the work tree had uncommitted changes.")


class TrainingInfo(_Frozen):
    """Free-form training parameters and evaluation metrics reported by the publisher."""

    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)


class VersionContent(_Frozen):
    """What a publisher supplies; the registry adds identity, source and file digests."""

    artifact: ArtifactInfo
    signature: Signature
    environment: TrainingEnvironment
    reference: ReferenceStats | None = Field(
        description="Feature and prediction statistics of the reference data; None if none given."
    )
    golden: GoldenSet
    training: TrainingInfo = Field(default_factory=TrainingInfo)
    critical_packages: list[str] = Field(
        default_factory=list,
        description="Packages the publisher declares as affecting numerics, beyond the defaults.",
    )
    description: str = ""


class ModelMetadata(VersionContent):
    """One published version, exactly as ``metadata.json`` stores it."""

    schema_version: int = METADATA_SCHEMA_VERSION
    name: str
    version: str = Field(description="'<git sha>/<timestamp>', the version's folder.")
    created_at: datetime
    source: SourceInfo
    files: dict[str, FileDigest]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"
