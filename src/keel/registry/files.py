"""File names inside a version folder, and their digests."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from keel.digest_memo import DigestMemo
from keel.errors import RegistryError
from keel.registry.metadata import FileDigest
from keel.registry.storage import CHUNK, Progress, sha256_stream
from keel.regular_files import open_regular

_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_file_name(name: str) -> str:
    """Refuse file names that could leave the version folder (separators, '..', hidden)."""
    if not _FILE_NAME.fullmatch(name) or ".." in name:
        raise RegistryError(
            f"file name {name!r} is not allowed in a version folder: plain names only "
            "(letters, digits, '_', '.', '-'), no separators and no '..'"
        )
    return name


def copy_with_digest(source: Path, target: Path, progress: Progress | None = None) -> FileDigest:
    """Copy a file and hash the bytes as they are copied, so the recorded hash is of the copy."""
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
        dst.flush()
        os.fsync(dst.fileno())
    return FileDigest(sha256=digest.hexdigest(), size=size)


def stored_digest(
    path: Path, below: Path, progress: Progress | None = None, memo: DigestMemo | None = None
) -> FileDigest | None:
    """The digest of a stored file, or None when it is missing.

    Refused (UnsafeArtifact) before a byte is read if the file, or a folder between
    ``below`` and it, is a symbolic link, or if the file is not a regular file. With
    ``memo``, a file this server hashed already, unchanged since, is not read again.
    """
    try:
        stream = open_regular(path, below)
    except FileNotFoundError:
        return None
    with stream:
        if memo is None:
            digest, size = sha256_stream(stream, progress)
        else:
            digest, size = memo.digest(stream, lambda s: sha256_stream(s, progress))
    return FileDigest(sha256=digest, size=size)
