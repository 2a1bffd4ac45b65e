"""A server's workers hash each model file once: the first notes it, the others read the note.

A file changed after its note (written in place, or another put in its place) is
hashed again and caught by the check like any other.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from keel.digest_memo import DigestMemo
from keel.errors import IntegrityError
from keel.registry import Registry, files
from keel.registry.storage import sha256_stream

MODEL = "breast-cancer@production"


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every file the registry reads to hash, as it reads it."""
    read: list[str] = []

    def counting(stream: BinaryIO, progress: object = None) -> tuple[str, int]:
        read.append(Path(stream.name).name if isinstance(stream.name, str) else str(stream.name))
        return sha256_stream(stream)

    monkeypatch.setattr(files, "sha256_stream", counting)
    return read


def test_a_second_worker_reads_the_note_not_the_file(
    demo_copy: Path, tmp_path: Path, hashed: list[str]
) -> None:
    memo = DigestMemo(tmp_path / "digests")
    first, second = (Registry(demo_copy, digest_memo=memo) for _ in range(2))
    metadata = first.resolve(MODEL)
    first.fetch(metadata)
    assert len(hashed) == len(metadata.files)
    second.fetch(metadata)
    assert len(hashed) == len(metadata.files)  # not one file read again


def test_a_file_changed_after_its_note_is_hashed_again_and_refused(
    demo_copy: Path, tmp_path: Path, hashed: list[str]
) -> None:
    memo = DigestMemo(tmp_path / "digests")
    registry = Registry(demo_copy, digest_memo=memo)
    metadata = registry.resolve(MODEL)
    folder = registry.fetch(metadata)
    artifact = folder / metadata.artifact.path
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    time.sleep(0.01)  # a change time the kernel can tell from the first
    artifact.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=metadata.artifact.path):
        registry.fetch(metadata)


def test_workers_hashing_one_file_at_once_hash_it_once(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x01" * (8 << 20))
    memo = DigestMemo(tmp_path / "digests")
    computed: list[int] = []
    answers: list[tuple[str, int]] = []

    def slowly(stream: BinaryIO) -> tuple[str, int]:
        computed.append(1)
        time.sleep(0.2)  # long enough that the other thread arrives meanwhile
        return sha256_stream(stream)

    def worker() -> None:
        with weights.open("rb") as stream:
            answers.append(memo.digest(stream, slowly))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(computed) == 1
    assert len(set(answers)) == 1
    assert answers[0][1] == 8 << 20
