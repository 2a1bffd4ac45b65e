"""Opening a file only when it is a regular file reached through no symbolic link.

A registry holds the bytes keel published; a symbolic link in their place (or in
place of a folder on the way) hands the reader some other file, chosen by whoever
planted the link and free to change after its hash was checked. A FIFO or a device
could block a reader or never end. So what keel loads is opened this way: each
step below a trusted folder is looked at without following links, the file itself
is opened with ``O_NOFOLLOW`` (a link put there since the check fails to open),
and what was opened is checked to be a regular file before a byte is read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from keel.errors import UnsafeArtifact

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    # Never wait on a FIFO swapped in after the check: fstat refuses it at once.
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def open_regular(path: Path, below: Path | None = None) -> BinaryIO:
    """Open ``path`` to read, refusing a symbolic link or anything but a regular file.

    Every folder between ``below`` (trusted as it is, links and all) and ``path``
    must be no link either. Raises UnsafeArtifact, or FileNotFoundError when
    ``path`` is absent.
    """
    check_regular(path, below)
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeArtifact(_link_message(path, path)) from None
        raise
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeArtifact(_not_regular_message(path, mode))
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def check_regular(path: Path, below: Path | None = None) -> None:
    """Raise UnsafeArtifact unless ``path`` and the folders to it from ``below`` are no links.

    Looks without opening anything, so a FIFO or a device is refused before it
    could block or answer. FileNotFoundError when something on the way is absent.
    """
    steps = [path] if below is None else _steps(path, below)
    mode = 0
    for step in steps:
        mode = os.lstat(step).st_mode
        if stat.S_ISLNK(mode):
            raise UnsafeArtifact(_link_message(path, step))
    if not stat.S_ISREG(mode):
        raise UnsafeArtifact(_not_regular_message(path, mode))


def _steps(path: Path, below: Path) -> list[Path]:
    try:
        parts = path.relative_to(below).parts
    except ValueError:
        raise UnsafeArtifact(f"{path} is not inside {below}") from None
    steps = []
    current = below
    for part in parts:
        current = current / part
        steps.append(current)
    return steps or [path]


def _link_message(path: Path, link: Path) -> str:
    where = "" if link == path else f" (the folder {link} on the way is one)"
    return (
        f"{path} is reached through a symbolic link{where}; keel reads only regular files "
        "stored in place, never a link to bytes kept elsewhere"
    )


def _not_regular_message(path: Path, mode: int) -> str:
    return f"{path} is {_kind(mode)}, not a regular file; keel reads only regular files"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"
