"""Loading a registry version: verify every hash, then build its runtime."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

from keel.registry import ModelMetadata, Registry
from keel.registry.storage import Progress
from keel.runtimes import Runtime, load_runtime
from keel.settings import RuntimeSettings


@dataclass(frozen=True)
class LoadedModel:
    """A version whose files were verified and whose runtime is ready to predict."""

    metadata: ModelMetadata
    runtime: Runtime
    folder: Path

    def close(self) -> None:
        self.runtime.close()


def load_version(
    registry: Registry,
    metadata: ModelMetadata,
    settings: RuntimeSettings | None = None,
    progress: Progress | None = None,
) -> LoadedModel:
    """Verify the version's files against their recorded hashes, then load the model.

    Raises IntegrityError naming the file when any hash or size differs, and
    UnsafeArtifact when the artifact is refused by the format guards.
    """
    folder = registry.fetch(metadata, progress)
    runtime = load_runtime(
        folder / metadata.artifact.path,
        settings=settings,
        forward=metadata.artifact.forward,
        forward_config=metadata.artifact.forward_config,
    )
    return_freed_memory()
    return LoadedModel(metadata, runtime, folder)


def return_freed_memory() -> None:
    """Give the heap freed by loading back to the operating system (glibc only).

    The ONNX guard parses the whole model once before ONNX Runtime loads it;
    glibc keeps that freed memory resident, measured at about one model size
    of RSS that no one uses. Elsewhere this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
