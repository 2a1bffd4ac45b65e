"""Validating a safetensors header before any tensor byte is used."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from keel.errors import UnsafeArtifact
from keel.runtimes import check_safetensors_header
from keel.runtimes.safetensors_header import DTYPES, MAX_HEADER_BYTES

RawSafetensorsWriter = Callable[..., Path]

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def entry(dtype: str, shape: list[object], begin: int, end: int) -> dict[str, object]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def test_file_written_by_safetensors_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file(
        {"w": np.ones((3, 4), dtype=np.float32), "step": np.array(7, dtype=np.int64)},
        str(path),
        metadata={"framework": "numpy"},
    )
    header = check_safetensors_header(path)
    w = header.tensors["w"]
    assert (w.dtype, w.shape, w.end - w.begin) == ("float32", (3, 4), 48)
    assert header.tensors["step"].shape == ()
    assert dict(header.metadata) == {"framework": "numpy"}
    assert header.data_start + header.data_size == path.stat().st_size


def test_every_supported_dtype_maps_to_numpy(raw_safetensors: RawSafetensorsWriter) -> None:
    tensors, offset = {}, 0
    for code, name in DTYPES.items():
        size = 2 * np.dtype(name).itemsize
        tensors[code] = entry(code, [2], offset, offset + size)
        offset += size
    header = check_safetensors_header(raw_safetensors(tensors, bytes(offset)))
    assert {t.name: t.dtype for t in header.tensors.values()} == dict(DTYPES)


def test_empty_tensors_may_share_an_offset(raw_safetensors: RawSafetensorsWriter) -> None:
    header = {"a": entry("F32", [0, 3], 4, 4), "b": entry("F32", [1], 0, 4)}
    assert set(check_safetensors_header(raw_safetensors(header, bytes(4))).tensors) == {"a", "b"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "truncated: 0 bytes"),
        (b"\x10\x00\x00", "truncated: 3 bytes"),
        (struct.pack("<Q", 64) + b'{"a": 1}', "larger than the 8 bytes that follow"),
        (struct.pack("<Q", 2**63) + b"{}", "exceeds the 104857600-byte limit"),
        (struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{}", "exceeds the 104857600-byte limit"),
    ],
    ids=["empty", "short-length", "length-past-end", "huge-length", "just-over-limit"],
)
def test_lying_or_missing_length_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(UnsafeArtifact, match=message):
        check_safetensors_header(path)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b'{"a": 1} trailing', "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b"{" * 10_000 + b"}" * 10_000, "not valid JSON"),
        (b'{"w": {}, "w": {}}', "appears twice"),
    ],
    ids=["not-utf8", "not-json", "trailing", "array", "string", "deep-nesting", "duplicate"],
)
def test_header_that_is_not_a_json_object_is_refused(
    raw_safetensors: RawSafetensorsWriter, header: bytes, message: str
) -> None:
    with pytest.raises(UnsafeArtifact, match=message):
        check_safetensors_header(raw_safetensors(header))


@pytest.mark.parametrize(
    ("tensors", "data_size", "message"),
    [
        ({"w": entry("F32", [2], 0, 8)}, 4, r"data_offsets \[0, 8\] outside the 4-byte"),
        ({"w": entry("F32", [1], 8, 4)}, 8, r"data_offsets \[8, 4\] outside"),
        ({"w": entry("F32", [1], -4, 0)}, 8, r"data_offsets \[-4, 0\] outside"),
        ({"w": entry("F32", [3], 0, 8)}, 8, r"spans 8 bytes but shape \[3\] of F32 needs 12"),
        ({"w": entry("F64", [1], 0, 4)}, 8, "spans 4 bytes but shape"),
        (
            {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)},
            12,
            r"'a' \[0, 8\] and 'b' \[4, 12\] overlap",
        ),
        (
            {"a": entry("F32", [2], 0, 8), "b": entry("U8", [8], 0, 8)},
            8,
            "overlap",
        ),
        ({"w": entry("BF16", [2], 0, 4)}, 4, "dtype 'BF16'.*cannot map to numpy"),
        ({"w": entry("F8_E4M3", [2], 0, 2)}, 2, "dtype 'F8_E4M3'"),
        ({"w": entry("float32", [1], 0, 4)}, 4, "dtype 'float32'"),
        ({"w": entry("F32", [-1], 0, 4)}, 4, "non-negative integers"),
        ({"w": entry("F32", [True], 0, 4)}, 4, "non-negative integers"),
        ({"w": entry("F32", [1.0], 0, 4)}, 4, "non-negative integers"),
        ({"w": entry("F32", [1] * 65, 0, 4)}, 4, "at most 64"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, 4, r"expected \[begin, end\]"),
        ({"w": {"dtype": "F32", "shape": [1]}}, 4, "must have exactly the keys"),
        ({"w": {**entry("F32", [1], 0, 4), "endian": "big"}}, 4, "must have exactly the keys"),
        ({"w": [0, 4]}, 4, "not an object"),
        ({"__metadata__": {"n": 1}}, 0, "must map strings to strings"),
        ({"__metadata__": "x"}, 0, "must map strings to strings"),
    ],
    ids=[
        "end-past-data",
        "end-before-begin",
        "negative-begin",
        "size-too-small-for-shape",
        "size-too-small-for-dtype",
        "overlap",
        "same-bytes-twice",
        "bf16",
        "f8",
        "numpy-spelling",
        "negative-dim",
        "bool-dim",
        "float-dim",
        "rank-65",
        "one-offset",
        "missing-key",
        "unknown-key",
        "entry-not-object",
        "metadata-not-strings",
        "metadata-not-object",
    ],
)
def test_bad_tensor_entries_are_refused_with_a_specific_message(
    raw_safetensors: RawSafetensorsWriter,
    tensors: dict[str, object],
    data_size: int,
    message: str,
) -> None:
    with pytest.raises(UnsafeArtifact, match=message):
        check_safetensors_header(raw_safetensors(tensors, bytes(data_size)))


def test_truncated_data_section_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"w": np.ones(100, dtype=np.float32)}, str(path))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UnsafeArtifact, match="outside the 390-byte data section"):
        check_safetensors_header(path)


def test_file_truncated_inside_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"w": np.ones(100, dtype=np.float32)}, str(path))
    (header_size,) = struct.unpack("<Q", path.read_bytes()[:8])
    path.write_bytes(path.read_bytes()[: 8 + header_size // 2])
    with pytest.raises(UnsafeArtifact, match="larger than the"):
        check_safetensors_header(path)


def check_or_refuse(path: Path) -> None:
    """The fuzzing property: a header is accepted whole and consistent, or refused."""
    try:
        header = check_safetensors_header(path)
    except UnsafeArtifact:
        return
    spans = sorted((t.begin, t.end) for t in header.tensors.values() if t.begin < t.end)
    assert all(end <= header.data_size for _, end in spans)
    assert all(a_end <= b_begin for (_, a_end), (b_begin, _) in pairwise(spans))
    for tensor in header.tensors.values():
        expected = math.prod(tensor.shape) * np.dtype(tensor.dtype).itemsize
        assert tensor.end - tensor.begin == expected


@FUZZ
@given(content=st.binary(max_size=256))
def test_random_bytes_are_accepted_or_refused_never_crash(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(content)
    check_or_refuse(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)


@FUZZ
@given(document=JSON, data=st.binary(max_size=64), length_delta=st.integers(-4, 4))
def test_random_json_headers_are_accepted_or_refused_never_crash(
    tmp_path: Path, document: object, data: bytes, length_delta: int
) -> None:
    header = json.dumps(document).encode()
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(struct.pack("<Q", max(0, len(header) + length_delta)) + header + data)
    check_or_refuse(path)


TENSOR_ENTRIES = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from([*DTYPES, "BF16", "F8_E5M2", "Q4"]),
        "shape": st.lists(st.integers(-1, 4), max_size=3),
        "data_offsets": st.lists(st.integers(-2, 80), min_size=1, max_size=3),
    }
)


@FUZZ
@given(
    tensors=st.dictionaries(st.text(max_size=4), TENSOR_ENTRIES, max_size=4),
    data_size=st.integers(0, 80),
)
def test_random_tensor_tables_are_accepted_or_refused_never_crash(
    tmp_path: Path, tensors: dict[str, object], data_size: int
) -> None:
    header = json.dumps(tensors).encode()
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(data_size))
    check_or_refuse(path)
