"""Which commit of the training code made a model, and whether its tree was clean."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from keel.errors import KeelError
from keel.registry.metadata import SourceInfo

UNTRACKED = "untracked"


def git_source(directory: Path, *, allow_untracked: bool = False) -> SourceInfo:
    """The full HEAD sha of the git repository holding ``directory``, and its dirtiness.

    Outside a repository publishing is refused unless ``allow_untracked``: a
    model whose code cannot be found again cannot be rebuilt six months later.
    """
    git = shutil.which("git")
    sha = _git(git, directory, "rev-parse", "--verify", "HEAD") if git else None
    if sha is None:
        if allow_untracked:
            return SourceInfo(git_sha=UNTRACKED, git_dirty=True)
        raise KeelError(
            f"{directory} is not inside a git repository with a commit, so the training code "
            "could not be recorded; commit it, or pass allow_untracked / --allow-untracked"
        )
    status = _git(git, directory, "status", "--porcelain")
    return SourceInfo(git_sha=sha, git_dirty=bool(status))


def _git(git: str | None, directory: Path, *args: str) -> str | None:
    if git is None:
        return None
    result = subprocess.run(
        [git, "-C", str(directory), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return result.stdout.strip() if result.returncode == 0 else None
