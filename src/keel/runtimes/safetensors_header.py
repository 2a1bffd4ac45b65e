"""Validate a safetensors header completely before any tensor byte is touched."""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType

import numpy as np

from keel.errors import RuntimeFailure, UnsafeArtifact
from keel.regular_files import open_regular

# The reference implementation refuses headers above 100 MB as well; a real header
# describes tensors, it does not hold them.
MAX_HEADER_BYTES = 100 * 1024 * 1024
LENGTH_BYTES = 8
METADATA_KEY = "__metadata__"
# Only the dtypes numpy can view natively; BF16 and the F8 variants would need a
# conversion, and a runtime that silently converts is not zero-copy any more.
DTYPES: Mapping[str, str] = MappingProxyType(
    {
        "F16": "float16",
        "F32": "float32",
        "F64": "float64",
        "I8": "int8",
        "I16": "int16",
        "I32": "int32",
        "I64": "int64",
        "U8": "uint8",
        "U16": "uint16",
        "U32": "uint32",
        "U64": "uint64",
        "BOOL": "bool",
    }
)
_ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})
# numpy cannot build arrays of higher rank.
_MAX_RANK = 64


@dataclass(frozen=True)
class SafetensorsTensor:
    """Where one tensor lives: numpy dtype, shape and byte range within the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header: every tensor's location, the metadata, and where the data starts."""

    tensors: Mapping[str, SafetensorsTensor]
    metadata: Mapping[str, str]
    data_start: int
    data_size: int


def check_safetensors_header(path: Path) -> SafetensorsHeader:
    """Read and validate the header of the safetensors file at ``path``; raise UnsafeArtifact."""
    try:
        with open_regular(path) as stream:
            file_size = os.fstat(stream.fileno()).st_size
            header_size = _read_header_size(path, stream.read(LENGTH_BYTES), file_size)
            raw = stream.read(header_size)
    except OSError as exc:
        raise RuntimeFailure(f"cannot read safetensors file {path}: {exc}") from exc
    if len(raw) != header_size:
        raise UnsafeArtifact(f"{path}: file is truncated inside the safetensors header")
    data_start = LENGTH_BYTES + header_size
    data_size = file_size - data_start
    document = _parse_json(path, raw)
    tensors: dict[str, SafetensorsTensor] = {}
    metadata: dict[str, str] = {}
    for name, entry in document.items():
        if name == METADATA_KEY:
            metadata = _check_metadata(path, entry)
        else:
            tensors[name] = _check_tensor(path, name, entry, data_size)
    _check_no_overlap(path, tensors.values())
    return SafetensorsHeader(
        tensors=MappingProxyType(tensors),
        metadata=MappingProxyType(metadata),
        data_start=data_start,
        data_size=data_size,
    )


def _read_header_size(path: Path, length: bytes, file_size: int) -> int:
    if len(length) < LENGTH_BYTES:
        raise UnsafeArtifact(
            f"{path}: file is truncated: {file_size} bytes, too short for the 8-byte "
            "safetensors header length"
        )
    (header_size,) = struct.unpack("<Q", length)
    if header_size > MAX_HEADER_BYTES:
        raise UnsafeArtifact(
            f"{path}: safetensors header length {header_size} exceeds the "
            f"{MAX_HEADER_BYTES}-byte limit"
        )
    if header_size > file_size - LENGTH_BYTES:
        raise UnsafeArtifact(
            f"{path}: safetensors header length {header_size} is larger than the "
            f"{file_size - LENGTH_BYTES} bytes that follow it"
        )
    return int(header_size)


def _parse_json(path: Path, raw: bytes) -> dict[str, object]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The position, not the byte: a refusal never quotes the file's content.
        raise UnsafeArtifact(
            f"{path}: safetensors header is not UTF-8 (at byte {LENGTH_BYTES + exc.start})"
        ) from exc
    if not text.startswith("{"):
        raise UnsafeArtifact(f"{path}: safetensors header is not a JSON object")
    try:
        document = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        # ValueError covers malformed JSON and duplicate keys; RecursionError a header
        # nested deeply enough to exhaust the parser's stack.
        raise UnsafeArtifact(f"{path}: safetensors header is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise UnsafeArtifact(f"{path}: safetensors header is not a JSON object")
    return document


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # A name given twice would let two readers disagree on which bytes a tensor holds.
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result


def _check_metadata(path: Path, entry: object) -> dict[str, str]:
    if not isinstance(entry, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in entry.items()
    ):
        raise UnsafeArtifact(
            f"{path}: safetensors header: '{METADATA_KEY}' must map strings to strings"
        )
    return dict(entry)


def _check_tensor(path: Path, name: str, entry: object, data_size: int) -> SafetensorsTensor:
    where = f"{path}: safetensors header: tensor '{name}'"
    if not isinstance(entry, dict):
        raise UnsafeArtifact(f"{where} is described by {type(entry).__name__}, not an object")
    if set(entry) != _ENTRY_KEYS:
        # A key we do not understand might change how another reader sees the bytes.
        raise UnsafeArtifact(
            f"{where} must have exactly the keys {sorted(_ENTRY_KEYS)}, got {sorted(entry)}"
        )
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise UnsafeArtifact(
            f"{where} has dtype {dtype!r}, which keel cannot map to numpy; "
            f"supported: {', '.join(DTYPES)}"
        )
    shape = _int_list(entry["shape"])
    if shape is None or len(shape) > _MAX_RANK or any(dim < 0 for dim in shape):
        raise UnsafeArtifact(
            f"{where} has shape {entry['shape']!r}; expected a list of at most "
            f"{_MAX_RANK} non-negative integers"
        )
    offsets = _int_list(entry["data_offsets"])
    if offsets is None or len(offsets) != 2:
        raise UnsafeArtifact(
            f"{where} has data_offsets {entry['data_offsets']!r}; expected [begin, end]"
        )
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise UnsafeArtifact(
            f"{where} has data_offsets [{begin}, {end}] outside the {data_size}-byte data section"
        )
    expected = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
    if end - begin != expected:
        raise UnsafeArtifact(
            f"{where} spans {end - begin} bytes but shape {shape} of {dtype} needs {expected}"
        )
    return SafetensorsTensor(name, DTYPES[dtype], tuple(shape), begin, end)


def _int_list(value: object) -> list[int] | None:
    if not isinstance(value, list):
        return None
    ints: list[int] = []
    for item in value:
        # bool is a subclass of int in Python, and [true] is not a shape.
        if type(item) is not int:
            return None
        ints.append(item)
    return ints


def _check_no_overlap(path: Path, tensors: Iterable[SafetensorsTensor]) -> None:
    # Empty tensors own no bytes, so they cannot alias anything.
    ordered = sorted((t for t in tensors if t.begin < t.end), key=lambda t: (t.begin, t.end))
    for previous, current in pairwise(ordered):
        if current.begin < previous.end:
            raise UnsafeArtifact(
                f"{path}: safetensors header: tensors '{previous.name}' [{previous.begin}, "
                f"{previous.end}] and '{current.name}' [{current.begin}, {current.end}] overlap"
            )
