"""The binary tensor data extension: tensors as raw little-endian bytes after the JSON header.

Fixed-size datatypes are laid out row-major without padding, BOOL one byte per
element (0 or 1). A BYTES element is a 4-byte little-endian unsigned length
followed by that many bytes; keel decodes them as UTF-8 ``str``.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.errors import ProtocolError

_LENGTH = struct.Struct("<I")
_MAX_ELEMENT_BYTES = 2**32 - 1
_NATIVE_LITTLE = sys.byteorder == "little"


def decode_fixed(
    body: bytes, offset: int, size: int, dtype: np.dtype[Any], count: int, where: str
) -> npt.NDArray[Any]:
    """A read-only flat view of ``count`` elements of ``dtype`` at ``body[offset:]``."""
    expected = count * dtype.itemsize
    if size != expected:
        raise ProtocolError(
            f"{where}: binary_data_size is {size} bytes but {count} elements of "
            f"{dtype.name} take {expected}"
        )
    # A view, not a copy: the request body outlives the request.
    array = np.frombuffer(body, dtype=dtype.newbyteorder("<"), count=count, offset=offset)
    if dtype.kind == "b" and count and array.view(np.uint8).max() > 1:
        raise ProtocolError(f"{where}: a BOOL element is neither 0 nor 1")
    if not array.dtype.isnative:
        array = array.astype(dtype)
    return array


def decode_bytes(body: bytes, offset: int, size: int, count: int, where: str) -> npt.NDArray[Any]:
    """A flat object array of the ``count`` length-prefixed UTF-8 strings at ``body[offset:]``."""
    # Every element costs at least its 4-byte length: refuse before allocating.
    if count * _LENGTH.size > size:
        raise ProtocolError(
            f"{where}: binary_data_size is {size} bytes, too few for {count} BYTES elements"
        )
    elements: list[str] = []
    position, end = offset, offset + size
    for index in range(count):
        if end - position < _LENGTH.size:
            raise ProtocolError(f"{where}: BYTES element {index} has no room for its length")
        (length,) = _LENGTH.unpack_from(body, position)
        position += _LENGTH.size
        if length > end - position:
            raise ProtocolError(
                f"{where}: BYTES element {index} claims {length} bytes but only "
                f"{end - position} remain"
            )
        try:
            elements.append(body[position : position + length].decode("utf-8"))
        except UnicodeDecodeError as error:
            raise ProtocolError(f"{where}: BYTES element {index} is not valid UTF-8") from error
        position += length
    if position != end:
        raise ProtocolError(
            f"{where}: binary_data_size is {size} bytes but its {count} BYTES elements "
            f"take {position - offset}"
        )
    array = np.empty(count, dtype=np.object_)
    array[:] = elements
    return array


def encode_fixed(array: npt.NDArray[Any]) -> bytes:
    """The row-major little-endian bytes of a numeric or BOOL array."""
    order = array.dtype.byteorder
    if order == "<" or order == "|" or (order == "=" and _NATIVE_LITTLE):
        return array.tobytes()  # row-major whatever the array's memory layout
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def encode_bytes(array: npt.NDArray[Any], where: str) -> bytes:
    """The length-prefixed form of a str / bytes array, str encoded as UTF-8."""
    parts: list[bytes] = []
    for element in array.ravel().tolist():
        raw = utf8_of(element, where) if not isinstance(element, bytes) else element
        if len(raw) > _MAX_ELEMENT_BYTES:
            raise ProtocolError(f"{where}: a BYTES element is larger than 4 GiB")
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def utf8_of(element: object, where: str) -> bytes:
    """The UTF-8 encoding of a str element; ProtocolError for anything else."""
    if not isinstance(element, str):
        raise ProtocolError(
            f"{where}: a BYTES element is {type(element).__name__}, not str or bytes"
        )
    try:
        return element.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ProtocolError(f"{where}: a BYTES element is not encodable as UTF-8") from error
