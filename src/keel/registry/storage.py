"""Byte storage under a registry root, through fsspec so a folder and a bucket behave alike."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from keel.errors import RegistryError

CHUNK = 1 << 20

Progress = Callable[[int], None]
"""Called with the number of bytes just processed; lets the CLI draw progress bars."""


def sha256_stream(stream: BinaryIO, progress: Progress | None = None) -> tuple[str, int]:
    """Hash a stream in chunks; return (hex digest, size in bytes)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return digest.hexdigest(), size


def sha256_file(path: Path, progress: Progress | None = None) -> tuple[str, int]:
    """Hash a local file; return (hex digest, size in bytes)."""
    with path.open("rb") as stream:
        return sha256_stream(stream, progress)


class Storage:
    """Paths relative to one root, read and written through an fsspec filesystem."""

    def __init__(self, url: str) -> None:
        try:
            fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise RegistryError(f"cannot open registry {url!r}: {exc}") from exc
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self.is_local = isinstance(fs, LocalFileSystem)

    def full(self, relative: str) -> str:
        """The backend path of ``relative`` (a '/'-separated path under the root)."""
        return f"{self.root}/{relative}" if relative else self.root

    def local_path(self, relative: str) -> Path:
        """The local file system path of ``relative``; only for a local registry."""
        if not self.is_local:
            raise RegistryError(f"{self.url} is not a local folder")
        return Path(self.full(relative))

    def exists(self, relative: str) -> bool:
        return bool(self.fs.exists(self.full(relative)))

    def read_bytes(self, relative: str) -> bytes:
        try:
            data: bytes = self.fs.cat_file(self.full(relative))
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise RegistryError(f"cannot read {relative} from {self.url}: {exc}") from exc
        return data

    def list_dirs(self, relative: str) -> list[str]:
        """Names of the folders directly under ``relative`` (empty if it does not exist)."""
        try:
            entries = self.fs.ls(self.full(relative), detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
        )

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a whole file so that readers see the old content or the new, never a part."""
        if self.is_local:
            target = self.local_path(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            try:
                with temp.open("wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, target)
            finally:
                temp.unlink(missing_ok=True)
            return
        # An object store PUT is atomic: the object appears whole or not at all.
        self.fs.pipe_file(self.full(relative), data)

    def put_file(self, source: Path, relative: str, progress: Progress | None = None) -> None:
        """Copy a local file into storage (used for remote registries)."""
        self.fs.put_file(str(source), self.full(relative), callback=_callback(progress))

    def get_file(self, relative: str, target: Path) -> None:
        """Copy a stored file to a local path."""
        target.parent.mkdir(parents=True, exist_ok=True)
        self.fs.get_file(self.full(relative), str(target))

    @contextlib.contextmanager
    def lock(self, relative: str) -> Iterator[None]:
        """Hold an exclusive lock named ``relative`` for a read-modify-write.

        Local registries use ``flock``, which also serialises writers in other
        processes on the same machine. Object stores get conditional writes in
        the object-store issue; until then they run the update unlocked.
        """
        if not self.is_local:
            yield
            return
        path = self.local_path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _callback(progress: Progress | None) -> fsspec.callbacks.Callback:
    if progress is None:
        return fsspec.callbacks.NoOpCallback()

    class _Relay(fsspec.callbacks.Callback):  # type: ignore[misc]
        def relative_update(self, inc: int = 1) -> None:
            assert progress is not None
            progress(inc)

    return _Relay()
