"""Recognise pickle streams by their content, however they are wrapped.

Nothing here unpickles anything: opcodes are only parsed, with the argument readers
and stack descriptions of :mod:`pickletools`, and compressed or zipped data is inflated
a few kilobytes at most.
"""

from __future__ import annotations

import bz2
import io
import lzma
import pickletools
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
# How much inflated data is enough to see a pickle header; bounded so a compression
# bomb costs nothing.
_INFLATED_BYTES = 4096
# How many members of a zip archive are looked into; a torch archive holds a handful.
_MAX_ZIP_MEMBERS = 1024
_PICKLE_SUFFIXES = (".pkl", ".pickle")
# A protocol 0/1 stream has no magic number; a run of this many well-formed opcodes
# is not something ONNX, safetensors or ordinary binary data produce by accident.
_MIN_OPCODES_WITHOUT_STOP = 8
_OPCODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
_LINE_ARGUMENTS = {"stringnl": 1, "stringnl_noescape": 1, "stringnl_noescape_pair": 2}
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    lzma.LZMAError,
)


def describe_pickle(path: Path, prefix: bytes) -> str | None:
    """Say how a file starting with ``prefix`` carries a pickle, or None if it seems not to."""
    if looks_like_pickle(prefix):
        return "a pickle"
    if prefix.startswith(NPY_MAGIC):
        return "a numpy .npy file (numpy stores object arrays in it as pickles)"
    inflated = _inflate_prefix(prefix)
    if inflated is not None:
        codec, data = inflated
        if looks_like_pickle(data):
            return f"a {codec}-compressed pickle (the way joblib saves models)"
        return None
    if prefix.startswith(_ZIP_MAGICS):
        return _describe_zip(path)
    return None


def looks_like_pickle(data: bytes) -> bool:
    """Whether ``data`` starts a pickle stream of any protocol (0 to 5)."""
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return True
    return _parses_as_opcodes(data)


def _parses_as_opcodes(data: bytes) -> bool:
    """Whether ``data`` is a stream of pickle opcodes that keeps the unpickler's stack sound."""
    stream = io.BytesIO(data)
    depth = 0
    marks: list[int] = []
    count = 0
    while True:
        count += 1
        code = stream.read(1)
        opcode = _OPCODES.get(code)
        if opcode is None:
            # Running off the end of the data is expected, since only a prefix is held.
            return not code and count > _MIN_OPCODES_WITHOUT_STOP
        if not _skip_argument(opcode, stream):
            return stream.tell() >= len(data) and count > _MIN_OPCODES_WITHOUT_STOP
        # The same stack bookkeeping pickletools.dis does: what would underflow the
        # unpickler's stack is not a pickle, however valid each opcode is on its own.
        before = opcode.stack_before
        if pickletools.markobject in before:
            if not marks:
                return False
            depth = marks.pop() - before.index(pickletools.markobject)
        else:
            depth -= len(before)
        if depth < 0:
            return False
        if opcode.stack_after == [pickletools.markobject]:
            marks.append(depth)
        else:
            depth += len(opcode.stack_after)
        if opcode.name == "STOP":
            return depth == 0 and not marks


def _skip_argument(opcode: pickletools.OpcodeInfo, stream: io.BytesIO) -> bool:
    """Read past the opcode's argument; False if it is malformed or cut off."""
    if opcode.arg is None:
        return True
    lines = _LINE_ARGUMENTS.get(opcode.arg.name)
    if lines is not None:
        # pickletools decodes these arguments with codecs.escape_decode, which warns on
        # odd escapes in arbitrary data; newline-terminated lines are all we check.
        return all(stream.readline().endswith(b"\n") for _ in range(lines))
    try:
        opcode.arg.reader(stream)
    except ValueError:
        return False
    return True


def _inflate_prefix(prefix: bytes) -> tuple[str, bytes] | None:
    for codec, matches, inflate in _CODECS:
        if matches(prefix):
            try:
                return codec, inflate(prefix)
            except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError):
                return None
    return None


def _is_zlib(prefix: bytes) -> bool:
    # RFC 1950: deflate method, window <= 32 KiB, and a header check that makes the
    # first two bytes a multiple of 31.
    return (
        len(prefix) >= 2
        and prefix[0] & 0x0F == 8
        and prefix[0] >> 4 <= 7
        and (prefix[0] << 8 | prefix[1]) % 31 == 0
    )


def _inflate_zlib(prefix: bytes) -> bytes:
    return zlib.decompressobj().decompress(prefix, _INFLATED_BYTES)


def _inflate_gzip(prefix: bytes) -> bytes:
    return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(prefix, _INFLATED_BYTES)


def _inflate_bz2(prefix: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(prefix, max_length=_INFLATED_BYTES)


def _inflate_xz(prefix: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(
        prefix, max_length=_INFLATED_BYTES
    )


def _inflate_lzma_alone(prefix: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(
        prefix, max_length=_INFLATED_BYTES
    )


_CODECS: tuple[tuple[str, Callable[[bytes], bool], Callable[[bytes], bytes]], ...] = (
    ("zlib", _is_zlib, _inflate_zlib),
    ("gzip", lambda p: p.startswith(b"\x1f\x8b"), _inflate_gzip),
    ("bz2", lambda p: p.startswith(b"BZh") and p[3:4].isdigit(), _inflate_bz2),
    ("xz", lambda p: p.startswith(b"\xfd7zXZ\x00"), _inflate_xz),
    # The .lzma ("alone") header starts with the properties byte, 0x5d for the
    # default settings joblib uses.
    ("lzma", lambda p: p.startswith(b"\x5d\x00"), _inflate_lzma_alone),
)


def _describe_zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist()[:_MAX_ZIP_MEMBERS]:
                if _member_is_pickle(archive, member):
                    # Not the member's name: a refusal never quotes the file's content.
                    return (
                        "a zip archive holding a pickle (torch.save and numpy .npz files "
                        "are built this way)"
                    )
    except _ZIP_ERRORS:
        return None
    return None


def _member_is_pickle(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bool:
    if member.filename.lower().endswith(_PICKLE_SUFFIXES):
        return True
    if member.is_dir():
        return False
    try:
        with archive.open(member) as stream:
            head = stream.read(_INFLATED_BYTES)
    except _ZIP_ERRORS:
        # An unreadable member (encrypted, unsupported compression) proves nothing; the
        # archive is refused as unrecognised anyway.
        return False
    return head.startswith(NPY_MAGIC) or looks_like_pickle(head)
