"""Opening only regular files reached through no symbolic link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keel import regular_files
from keel.errors import UnsafeArtifact
from keel.regular_files import open_regular


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``root/a/b/file`` holding ``bytes``, and ``outside`` holding the same."""
    (tmp_path / "root" / "a" / "b").mkdir(parents=True)
    (tmp_path / "root" / "a" / "b" / "file").write_bytes(b"bytes")
    (tmp_path / "outside").write_bytes(b"bytes")
    return tmp_path


def test_a_regular_file_is_opened_and_read(tree: Path) -> None:
    with open_regular(tree / "root" / "a" / "b" / "file", below=tree / "root") as stream:
        assert stream.read() == b"bytes"


def test_a_link_to_the_same_bytes_is_refused(tree: Path) -> None:
    link = tree / "root" / "a" / "b" / "link"
    link.symlink_to(tree / "outside")
    with pytest.raises(UnsafeArtifact, match="is reached through a symbolic link;"):
        open_regular(link, below=tree / "root")


def test_a_linked_folder_on_the_way_is_refused(tree: Path) -> None:
    (tree / "root" / "c").symlink_to(tree / "root" / "a", target_is_directory=True)
    with pytest.raises(UnsafeArtifact, match=r"the folder .*c on the way is one"):
        open_regular(tree / "root" / "c" / "b" / "file", below=tree / "root")


def test_links_above_the_trusted_folder_are_followed(tree: Path) -> None:
    linked_root = tree / "linked-root"
    linked_root.symlink_to(tree / "root", target_is_directory=True)
    with open_regular(linked_root / "a" / "b" / "file", below=linked_root) as stream:
        assert stream.read() == b"bytes"


def test_a_link_put_in_place_after_the_check_fails_to_open(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = tree / "root" / "link"
    link.symlink_to(tree / "outside")
    # As if the link replaced a regular file between the check and the open.
    monkeypatch.setattr(regular_files, "check_regular", lambda path, below=None: None)
    with pytest.raises(UnsafeArtifact, match="symbolic link"):
        open_regular(link)


def test_a_named_pipe_is_refused_without_blocking(tree: Path) -> None:
    pipe = tree / "root" / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(UnsafeArtifact, match="is a named pipe, not a regular file"):
        open_regular(pipe)


def test_a_folder_is_refused(tree: Path) -> None:
    with pytest.raises(UnsafeArtifact, match="is a folder, not a regular file"):
        open_regular(tree / "root" / "a")


def test_a_missing_file_is_file_not_found(tree: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_regular(tree / "root" / "absent", below=tree / "root")


def test_a_path_outside_the_trusted_folder_is_refused(tree: Path) -> None:
    with pytest.raises(UnsafeArtifact, match="is not inside"):
        open_regular(tree / "outside", below=tree / "root")
