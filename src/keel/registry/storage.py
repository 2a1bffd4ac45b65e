"""Byte storage under a registry root, through fsspec so a folder and a bucket behave alike."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import get_protocol

from keel.errors import RegistryError
from keel.regular_files import open_regular
from keel.shared_files import exclusive

CHUNK = 1 << 20

S3_PROTOCOLS = frozenset({"s3", "s3a"})
# Other processes publish versions and move aliases (a server re-reads them for
# hot swap), so listings are never cached; and a fresh client per Storage picks
# up the AWS_* environment (endpoint, credentials) as it is now.
S3_OPTIONS: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
UPDATE_ATTEMPTS = 20
"""Conditional writes an update tries before it gives up (each loss means another writer won)."""
# What S3 answers when a conditional write loses: 412 when the ETag no longer
# matches, 409 when another conditional write to the key is in flight.
CONDITION_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})

Change = Callable[[bytes | None], bytes]
"""Turns a file's current content (None when absent) into its new content."""

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
        protocol = get_protocol(url)
        options = S3_OPTIONS if protocol in S3_PROTOCOLS else {}
        try:
            fs, root = fsspec.core.url_to_fs(url, **options)
        except (ImportError, ValueError) as exc:
            raise RegistryError(f"cannot open registry {url!r}: {exc}") from exc
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self.is_local = isinstance(fs, LocalFileSystem)
        self.has_conditional_writes = protocol in S3_PROTOCOLS

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
        """The whole file; in a local folder, refused (UnsafeArtifact) if reached by a link."""
        try:
            if self.is_local:
                with open_regular(self.local_path(relative), below=Path(self.root)) as stream:
                    return stream.read()
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
        """Copy a stored file to a local path, whole or not at all.

        The copy goes to a scratch name beside ``target`` and is renamed into place
        once complete: a download cut short (a crash, a full disk) never leaves a
        partial file where a later run would take it for the whole one.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            self.fs.get_file(self.full(relative), str(scratch))
            os.replace(scratch, target)
        finally:
            scratch.unlink(missing_ok=True)

    def create_bytes(self, relative: str, data: bytes) -> None:
        """Write a whole new file; raise FileExistsError, writing nothing, if it exists."""
        if self.is_local:
            target = self.local_path(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            try:
                temp.write_bytes(data)
                os.link(temp, target)  # atomic, and fails if the target exists
            finally:
                temp.unlink(missing_ok=True)
            return
        # S3 turns mode="create" into If-None-Match: *, checked by the server.
        self.fs.pipe_file(self.full(relative), data, mode="create")

    def update(self, relative: str, change: Change) -> None:
        """Read-modify-write ``relative`` without losing a concurrent writer's change.

        A local folder holds an ``flock`` on a sibling lock file, which also
        serialises writers in other processes on the same machine. S3 has no
        lock: the new content is written only if the object is still the one
        read (If-Match on its ETag, or If-None-Match when it was absent); a
        writer that loses re-reads, re-applies ``change`` and tries again.
        """
        if self.is_local:
            with self._local_lock(_lock_name(relative)):
                try:
                    current: bytes | None = self.read_bytes(relative)
                except FileNotFoundError:
                    current = None
                self.write_bytes(relative, change(current))
            return
        if not self.has_conditional_writes:
            raise RegistryError(
                f"{self.url}: read-modify-write updates need a local folder or an s3:// "
                "registry (conditional writes); this backend offers neither"
            )
        for attempt in range(UPDATE_ATTEMPTS):
            if self._try_conditional_update(relative, change):
                return
            # Jittered exponential backoff, so that racing writers spread out.
            time.sleep(random.uniform(0, min(1.0, 0.01 * 2**attempt)))  # noqa: S311
        raise RegistryError(
            f"{relative} in {self.url} was changed by other writers {UPDATE_ATTEMPTS} times "
            "while this update was being made; nothing was written, try again"
        )

    def _try_conditional_update(self, relative: str, change: Change) -> bool:
        """One optimistic read-modify-write on S3; False when another writer got there first."""
        path = self.full(relative)
        try:
            try:
                # s3fs reads the object's ETag first and sends If-Match with
                # every ranged GET, so the content and the ETag belong together.
                with self.fs.open(path, "rb") as stream:
                    current: bytes | None = stream.read()
                    etag: str | None = stream.details["ETag"]
            except FileNotFoundError:
                current, etag = None, None
            data = change(current)
            if etag is None:
                self.fs.pipe_file(path, data, mode="create")
            else:
                self.fs.pipe_file(path, data, IfMatch=etag)
        except FileExistsError:
            return False  # created by another writer since we found it absent
        except OSError as exc:
            if _condition_failed(exc):
                return False
            raise RegistryError(f"cannot update {relative} in {self.url}: {exc}") from exc
        return True

    @contextlib.contextmanager
    def _local_lock(self, relative: str) -> Iterator[None]:
        path = self.local_path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(path):
            yield


def _lock_name(relative: str) -> str:
    folder, _, name = relative.rpartition("/")
    return f"{folder}/.{name}.lock" if folder else f".{name}.lock"


def _condition_failed(exc: BaseException) -> bool:
    """Whether an s3fs error is S3 refusing a conditional request (412 or 409).

    The botocore error sits somewhere down the cause chain: s3fs wraps it in an
    OSError, and wraps that again (FileExpired) when a read's If-Match fails
    because the object changed between its HEAD and its GET.
    """
    cause: BaseException | None = exc
    while cause is not None:
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return code in CONDITION_FAILED or str(status) in CONDITION_FAILED
        cause = cause.__cause__
    return False


def _callback(progress: Progress | None) -> fsspec.callbacks.Callback:
    if progress is None:
        return fsspec.callbacks.NoOpCallback()

    class _Relay(fsspec.callbacks.Callback):  # type: ignore[misc]
        def relative_update(self, inc: int = 1) -> None:
            assert progress is not None
            progress(inc)

    return _Relay()
