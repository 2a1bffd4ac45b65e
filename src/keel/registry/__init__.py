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
from keel.registry.version_ids import id_matches, selects, short_ids, version_id

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
    "id_matches",
    "parse_ref",
    "selects",
    "short_ids",
    "version_id",
]
