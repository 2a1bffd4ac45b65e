"""Tell a model file's format from its first bytes, refusing pickle in every disguise."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from keel.errors import RuntimeFailure, UnsafeArtifact
from keel.regular_files import open_regular
from keel.runtimes.pickles import describe_pickle
from keel.runtimes.safetensors_header import (
    LENGTH_BYTES,
    MAX_HEADER_BYTES,
    check_safetensors_header,
)

ONNX = "onnx"
SAFETENSORS = "safetensors"
# Enough for the ONNX fields ahead of the graph, a safetensors header's opening, and
# a pickle's first opcodes or a compressed pickle's first block.
PREFIX_BYTES = 4096

_VARINT, _LENGTH_DELIMITED = 0, 2
# onnx.proto ModelProto: field number -> wire type. Anything else at the top level
# means the bytes are not a ModelProto.
_MODEL_FIELDS = {
    1: _VARINT,  # ir_version
    2: _LENGTH_DELIMITED,  # producer_name
    3: _LENGTH_DELIMITED,  # producer_version
    4: _LENGTH_DELIMITED,  # domain
    5: _VARINT,  # model_version
    6: _LENGTH_DELIMITED,  # doc_string
    7: _LENGTH_DELIMITED,  # graph
    8: _LENGTH_DELIMITED,  # opset_import
    14: _LENGTH_DELIMITED,  # metadata_props
    20: _LENGTH_DELIMITED,  # training_info
    25: _LENGTH_DELIMITED,  # functions
    26: _LENGTH_DELIMITED,  # configuration
}
_IR_VERSION_FIELD = 1
# IR versions so far run from 1 to the low teens; leave room for the future.
_MAX_IR_VERSION = 64
_MAX_VARINT_BYTES = 10

_EXPORT_ADVICE = (
    "Export the model to ONNX instead (skl2onnx.to_onnx for scikit-learn, "
    "torch.onnx.export for PyTorch), or save its weights with safetensors and name a "
    "forward implementation."
)


def sniff_format(path: Path) -> str:
    """Return "onnx" or "safetensors" for the file at ``path``, reading only its first bytes.

    Raises UnsafeArtifact for a pickle (plain, compressed the joblib way, zipped the
    torch way, or inside a numpy file) and for anything not recognisably ONNX or
    safetensors. Only a file already refused is looked into further: a zip archive's
    member list and the first bytes of its members, to say whether it holds a pickle,
    and the header length of a file laid out like safetensors, to say why it is wrong.
    """
    prefix, size = _read_prefix(path)
    # The two accepted formats are recognised first and strictly: a safetensors header
    # length can begin with the same bytes as a pickle or a zlib stream.
    if _looks_like_safetensors(prefix, size):
        return SAFETENSORS
    if _looks_like_onnx(prefix, size):
        return ONNX
    disguise = describe_pickle(path, prefix)
    if disguise is not None:
        raise UnsafeArtifact(
            f"{path} is {disguise}. Loading a pickle can execute arbitrary code, so keel "
            f"refuses it without loading it. {_EXPORT_ADVICE}"
        )
    if prefix[LENGTH_BYTES : LENGTH_BYTES + 1] == b"{":
        # Laid out like safetensors, but its header length is out of bounds: the header
        # check says which bound, which is more use than "unrecognised".
        check_safetensors_header(path)
    # What the file seems to be, never its bytes: a refusal is shown in answers and
    # model metadata, and must not hand out what a misplaced file holds.
    raise UnsafeArtifact(
        f"unrecognised model format: {path} is neither an ONNX model nor a safetensors "
        f"file (it looks like {_apparent_kind(prefix, size)}). {_EXPORT_ADVICE}"
    )


# Formats a misplaced file is often in, by their magic numbers.
_MAGIC_KINDS = (
    (b"\x7fELF", "an executable (ELF)"),
    (b"MZ", "a Windows executable"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5 models are these; export to ONNX)"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"BZh", "bz2-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"SQLite format 3\x00", "an SQLite database"),
)


def _apparent_kind(prefix: bytes, size: int) -> str:
    """What a file seems to be, in words that quote none of its bytes."""
    if size == 0:
        return "an empty file"
    for magic, kind in _MAGIC_KINDS:
        if prefix.startswith(magic):
            return kind
    try:
        # A multi-byte character may be cut at the end of the prefix.
        text = prefix.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(prefix) - 3:
            return "binary data of no format keel knows"
        text = prefix[: exc.start].decode("utf-8")
    if not all(c.isprintable() or c.isspace() for c in text):
        return "binary data of no format keel knows"
    start = text.lstrip()[:1]
    if start in ("{", "["):
        return "text (JSON, perhaps)"
    if start == "<":
        return "text (XML or HTML, perhaps)"
    if text.startswith("#!"):
        return "a script"
    return "text"


def _read_prefix(path: Path) -> tuple[bytes, int]:
    try:
        # A link could swap other bytes in after the registry checked these; a FIFO or
        # a device could block or read without end.
        with open_regular(path) as stream:
            return stream.read(PREFIX_BYTES), os.fstat(stream.fileno()).st_size
    except OSError as exc:
        raise RuntimeFailure(f"cannot read model file {path}: {exc}") from exc


def _looks_like_safetensors(prefix: bytes, size: int) -> bool:
    if len(prefix) <= LENGTH_BYTES:
        return False
    (header_size,) = struct.unpack("<Q", prefix[:LENGTH_BYTES])
    return (
        2 <= header_size <= min(MAX_HEADER_BYTES, size - LENGTH_BYTES)
        and prefix[LENGTH_BYTES : LENGTH_BYTES + 1] == b"{"
    )


def _looks_like_onnx(prefix: bytes, size: int) -> bool:
    """Walk the top-level protobuf fields in ``prefix``: all must be ModelProto fields."""
    position = 0
    ir_version_seen = False
    while position < len(prefix):
        tag = _read_varint(prefix, position)
        if tag is None:
            break
        key, position = tag
        field, wire_type = key >> 3, key & 7
        if _MODEL_FIELDS.get(field) != wire_type:
            return False
        value = _read_varint(prefix, position)
        if value is None:
            break
        number, position = value
        if wire_type == _LENGTH_DELIMITED:
            if position + number > size:
                return False
            position += number
        elif field == _IR_VERSION_FIELD:
            if not 1 <= number <= _MAX_IR_VERSION:
                return False
            ir_version_seen = True
    # Every writer (onnx, torch.onnx, skl2onnx, tf2onnx) emits ir_version first, so a
    # real model shows it inside the prefix.
    return ir_version_seen


def _read_varint(data: bytes, position: int) -> tuple[int, int] | None:
    """Decode a protobuf varint at ``position``; None if it runs past ``data`` or is too long."""
    result = 0
    for index in range(_MAX_VARINT_BYTES):
        if position + index >= len(data):
            return None
        byte = data[position + index]
        result |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            return result, position + index + 1
    return None
