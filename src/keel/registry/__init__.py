"""The model registry: versions, aliases, history and integrity, over fsspec storage."""

from keel.registry.aliases import AliasEvent
from keel.registry.metadata import (
    ArtifactInfo,
    FileDigest,
    ModelMetadata,
    SourceInfo,
    TrainingInfo,
    VersionContent,
)
from keel.registry.names import ModelRef, parse_ref
from keel.registry.registry import Registry

__all__ = [
    "AliasEvent",
    "ArtifactInfo",
    "FileDigest",
    "ModelMetadata",
    "ModelRef",
    "Registry",
    "SourceInfo",
    "TrainingInfo",
    "VersionContent",
    "parse_ref",
]
