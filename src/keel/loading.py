"""Loading a registry version: verify every hash, then build its runtime."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

from keel.registry import ModelMetadata, Registry
from keel.registry.storage import Progress
from keel.runtimes import Runtime, load_runtime
from keel.runtimes.onnx_layout import LayoutCache
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
    *,
    shared_layout: bool = False,
) -> LoadedModel:
    """Verify the version's files against their recorded hashes, then load the model.

    With ``shared_layout`` (the server), a large ONNX model runs from a layout derived
    into the registry's cache whose weights every process shares (``onnx_layout``).
    Raises IntegrityError naming the file when any hash or size differs, and
    UnsafeArtifact when the artifact is refused by the format guards.
    """
    folder = registry.fetch(metadata, progress)
    layout = None
    if shared_layout:
        layout = LayoutCache(
            folder=registry.cache_dir / "onnx-layouts",
            artifact_sha256=metadata.files[metadata.artifact.path].sha256,
            model_bytes=sum(digest.size for digest in metadata.files.values()),
            memo=registry.digest_memo,
        )
    runtime = load_runtime(
        folder / metadata.artifact.path,
        settings=settings,
        forward=metadata.artifact.forward,
        forward_config=metadata.artifact.forward_config,
        layout=layout,
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
