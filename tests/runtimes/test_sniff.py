"""Telling ONNX and safetensors apart from everything else, pickle above all, by content."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from keel.errors import RuntimeFailure, UnsafeArtifact
from keel.runtimes import sniff_format

PICKLE_ADVICE = r"(?s)pickle.*arbitrary code.*ONNX.*safetensors"
PAYLOAD = {"coef": [0.5, -1.25], "intercept": 0.1, "classes": ["benign", "malignant"]}


class TouchOnLoad:
    """An object whose unpickling creates ``marker``: proof of whether a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["model.onnx", "model.safetensors", "weights.bin"])
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_of_any_protocol_is_refused_whatever_its_name(
    tmp_path: Path, name: str, protocol: int
) -> None:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(PAYLOAD, protocol=protocol))
    with pytest.raises(UnsafeArtifact, match=PICKLE_ADVICE):
        sniff_format(path)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_refusing_a_pickle_runs_none_of_its_code(tmp_path: Path, protocol: int) -> None:
    live = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(TouchOnLoad(live), protocol=protocol))
    assert live.exists(), "the payload must really create its marker when unpickled"

    marker = tmp_path / "marker"
    path = tmp_path / "model.onnx"
    path.write_bytes(pickle.dumps(TouchOnLoad(marker), protocol=protocol))
    with pytest.raises(UnsafeArtifact, match=PICKLE_ADVICE):
        sniff_format(path)
    assert not marker.exists()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "zlib": zlib.compress,
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
}


@pytest.mark.parametrize("codec", COMPRESSORS)
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_compressed_pickle_is_refused(tmp_path: Path, codec: str, protocol: int) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(COMPRESSORS[codec](pickle.dumps(PAYLOAD, protocol=protocol)))
    with pytest.raises(UnsafeArtifact, match=rf"{codec}-compressed pickle.*joblib"):
        sniff_format(path)


@pytest.mark.parametrize("compress", ["zlib", "gzip", "bz2", "lzma", "xz"])
def test_real_joblib_files_are_refused(tmp_path: Path, compress: str) -> None:
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "model.onnx"
    joblib.dump({"weights": np.arange(1000.0)}, path, compress=(compress, 3))
    with pytest.raises(UnsafeArtifact, match=PICKLE_ADVICE):
        sniff_format(path)


def test_compressed_data_that_is_not_a_pickle_is_unrecognised(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(gzip.compress(b"just some text, nothing to unpickle\n" * 20))
    with pytest.raises(UnsafeArtifact, match="unrecognised model format") as caught:
        sniff_format(path)
    assert "pickle" not in str(caught.value)


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_torch_style_archive_is_refused(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "model.onnx",
        {
            "archive/data.pkl": pickle.dumps(PAYLOAD, protocol=2),
            "archive/data/0": np.arange(4, dtype=np.float32).tobytes(),
            "archive/version": b"3\n",
        },
    )
    with pytest.raises(UnsafeArtifact, match="zip archive holding a pickle") as caught:
        sniff_format(path)
    # A member's name is the file's content, which a refusal never quotes.
    assert "data.pkl" not in str(caught.value)


def test_zip_holding_a_pkl_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "weights.bin", {"model.pkl": pickle.dumps(PAYLOAD)})
    with pytest.raises(UnsafeArtifact, match=PICKLE_ADVICE):
        sniff_format(path)


def test_zip_member_with_a_pickle_inside_is_refused_whatever_its_name(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "model.safetensors",
        {"README": b"hello", "weights.bin": pickle.dumps(PAYLOAD, protocol=0)},
    )
    with pytest.raises(UnsafeArtifact, match=r"(?s)zip archive holding a pickle.*arbitrary code"):
        sniff_format(path)


def test_npz_with_object_arrays_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, layers=np.array([{"w": 1}], dtype=object))
    path = tmp_path / "model.onnx"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UnsafeArtifact, match=PICKLE_ADVICE):
        sniff_format(path)


def test_npy_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    np.save(path.with_suffix(".npy"), np.arange(10.0))
    path.with_suffix(".npy").rename(path)
    with pytest.raises(UnsafeArtifact, match=r"(?s)numpy \.npy.*arbitrary code"):
        sniff_format(path)


def test_zip_without_pickles_is_unrecognised(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "model.onnx", {"weights.txt": b"0.5 0.25\n"})
    with pytest.raises(UnsafeArtifact, match="unrecognised model format"):
        sniff_format(path)


def test_onnx_model_is_recognised(breast_cancer_onnx: Path) -> None:
    assert sniff_format(breast_cancer_onnx) == "onnx"


def test_safetensors_file_is_recognised_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    save_file({"w": np.ones((2, 3), dtype=np.float32)}, str(path))
    assert sniff_format(path) == "safetensors"


@pytest.mark.parametrize(
    ("header_size", "lookalike"),
    [(0x0280, b"\x80\x02"), (0x9C78, b"\x78\x9c")],
    ids=["pickle-protocol-2", "zlib"],
)
def test_safetensors_header_length_that_looks_like_another_format_is_still_safetensors(
    tmp_path: Path, header_size: int, lookalike: bytes
) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", header_size) + header.ljust(header_size).encode() + bytes(4))
    assert path.read_bytes().startswith(lookalike)
    assert sniff_format(path) == "safetensors"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"ir_version: 8\n",
        b"\x08",
        b"\x08\x00\x12\x03abc",
        b"\x89PNG\r\n\x1a\n" + bytes(32),
    ],
    ids=["empty", "text", "truncated-tag", "ir-version-zero", "png"],
)
def test_anything_else_is_an_unrecognised_format(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(UnsafeArtifact, match="unrecognised model format"):
        sniff_format(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (struct.pack("<Q", 10**12) + b"{}", "header length 1000000000000 exceeds the"),
        (struct.pack("<Q", 64) + b'{"w": 1}', "header length 64 is larger than the 8 bytes"),
    ],
    ids=["huge-header-length", "header-length-past-the-end"],
)
def test_safetensors_layout_with_a_lying_header_length_is_refused_naming_the_header(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    with pytest.raises(UnsafeArtifact, match=f"safetensors {message}"):
        sniff_format(path)


SECRET = b"root:x:0:0:root:/root:/bin/bash\nAKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG\n"


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (SECRET, "text"),
        (b'{"token": "s3cr3t-value-0123456789"}', "text (JSON, perhaps)"),
        (b"\x7fELF\x02\x01\x01" + bytes(64), "an executable (ELF)"),
        (bytes(range(1, 200)), "binary data of no format keel knows"),
        (b"", "an empty file"),
    ],
    ids=["text", "json", "elf", "binary", "empty"],
)
def test_an_unrecognised_file_is_described_without_quoting_its_bytes(
    tmp_path: Path, content: bytes, kind: str
) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(UnsafeArtifact, match="unrecognised model format") as caught:
        sniff_format(path)
    message = str(caught.value).replace(str(path), "")
    assert f"it looks like {kind})" in message
    for start in range(len(content) - 3):
        chunk = content[start : start + 4]
        assert chunk.hex(" ") not in message
        assert chunk.hex() not in message
        assert chunk.decode("latin-1") not in message


def test_a_symbolic_link_to_a_model_is_refused_before_it_is_read(
    tmp_path: Path, breast_cancer_onnx: Path
) -> None:
    link = tmp_path / "model.onnx"
    link.symlink_to(breast_cancer_onnx)
    with pytest.raises(UnsafeArtifact, match="symbolic link"):
        sniff_format(link)


def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    pipe = tmp_path / "model.onnx"
    os.mkfifo(pipe)
    with pytest.raises(UnsafeArtifact, match="a named pipe, not a regular file"):
        sniff_format(pipe)


def test_a_folder_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArtifact, match="not a regular file"):
        sniff_format(tmp_path)


def test_a_missing_file_is_a_runtime_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match="cannot read model file"):
        sniff_format(tmp_path / "absent.onnx")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=600))
def test_any_bytes_are_sniffed_or_refused_never_crash(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz.bin"
    path.write_bytes(content)
    with contextlib.suppress(UnsafeArtifact):
        assert sniff_format(path) in {"onnx", "safetensors"}
