"""Digests of files already hashed by this server, so N workers hash each file once.

Every worker verifies every file it loads against its recorded sha256, and a
server of N workers would hash the same gigabytes N times, all at start, on the
cores the others are loading on. The first worker to hash a file notes the
digest here under what the kernel says of that file (device, inode, size,
modification and change times); another that finds the same file unchanged takes
the note instead of reading it again. Writing to the file, or putting another in
its place, changes its change time (``st_ctime``, which no one but the kernel can
set), so a changed file is never taken for the one that was hashed: it is hashed
again and checked like any other. Workers hashing one file at once wait for the
first (a lock per file), and the others then read its note.

The folder is the server's own (the workers' shared folder, mode 0700): only
processes that could change the model files themselves can write a note.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from keel.shared_files import exclusive, write_whole

Digest = tuple[str, int]
"""A file's sha256 (hex) and size in bytes."""


class DigestMemo:
    """Notes of ``(sha256, size)`` by file identity, kept in ``folder``.

    Used while ``in_use()`` is true: for a server's start, when every worker loads
    the same files at once. A version loaded later (a hot swap, a worker started
    again) is hashed by each worker itself, as a lone server hashes it, so a file
    damaged since the start is caught however its times look.
    """

    def __init__(self, folder: Path, in_use: Callable[[], bool] = lambda: True) -> None:
        self.folder = folder
        self.in_use = in_use

    def digest(self, stream: BinaryIO, compute: Callable[[BinaryIO], Digest]) -> Digest:
        """``stream``'s digest: noted already for this very file, else ``compute``'s, noted."""
        if not self.in_use():
            return compute(stream)
        key = _identity(stream)
        note = self.folder / key
        found = _read(note)
        if found is not None:
            return found
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with exclusive(self.folder / f"{key}.lock"):
            found = _read(note)
            if found is not None:
                return found
            sha256, size = compute(stream)
            write_whole(note, f"{sha256} {size}".encode())
        return sha256, size


def _identity(stream: BinaryIO) -> str:
    facts = os.fstat(stream.fileno())
    key = (facts.st_dev, facts.st_ino, facts.st_size, facts.st_mtime_ns, facts.st_ctime_ns)
    return hashlib.sha256(repr(key).encode()).hexdigest()[:32]


def _read(note: Path) -> Digest | None:
    try:
        sha256, size = note.read_text().split()
        return sha256, int(size)
    except (OSError, ValueError):
        return None
