"""Check where an ONNX model's external tensor data lives before any runtime reads it.

keel does these checks itself instead of trusting the onnxruntime version installed:
a model is an untrusted input, and an external-data location is a file path it chooses.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath

import onnx
from google.protobuf.message import DecodeError

from keel.errors import RuntimeFailure, UnsafeArtifact

# onnxruntime reads a location containing this marker as a raw address in its memory.
_ORT_MEMORY_MARKER = "_ORT_MEM_ADDR_"
_DECIMAL = re.compile(r"[0-9]+")


def check_onnx_external_data(path: Path) -> None:
    """Refuse the model at ``path`` if any external-data location could reach outside its folder."""
    model = _load_without_data(path)
    folder = path.parent
    for tensor in _external_tensors(model):
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        problem = _location_problem(folder, location) or _range_problem(folder, location, entries)
        if problem is not None:
            raise UnsafeArtifact(
                f"{path}: tensor '{tensor.name}' keeps its data at {location!r}, which "
                f"{problem}; external data must be a regular file inside the model's folder"
            )


def _load_without_data(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path), load_external_data=False)
    except DecodeError as exc:
        raise UnsafeArtifact(f"{path} is not a valid ONNX model: {exc}") from exc
    except OSError as exc:
        raise RuntimeFailure(f"cannot read ONNX model {path}: {exc}") from exc


def _external_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Yield every tensor in the model that declares external data, subgraphs included."""
    graphs: list[onnx.GraphProto] = [model.graph]
    attributes: list[onnx.AttributeProto] = []
    for function in model.functions:
        attributes.extend(function.attribute_proto)
        for node in function.node:
            attributes.extend(node.attribute)
    for training in model.training_info:
        graphs.extend((training.initialization, training.algorithm))
    tensors: list[onnx.TensorProto] = []
    # A work list rather than recursion: how deeply subgraphs nest is the model's choice.
    while graphs or attributes:
        while graphs:
            graph = graphs.pop()
            tensors.extend(graph.initializer)
            tensors.extend(_sparse_parts(graph.sparse_initializer))
            for node in graph.node:
                attributes.extend(node.attribute)
        while attributes:
            attribute = attributes.pop()
            tensors.append(attribute.t)
            tensors.extend(attribute.tensors)
            tensors.extend(_sparse_parts((attribute.sparse_tensor, *attribute.sparse_tensors)))
            graphs.append(attribute.g)
            graphs.extend(attribute.graphs)
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data) > 0:
            yield tensor


def _sparse_parts(sparse_tensors: Iterable[onnx.SparseTensorProto]) -> Iterator[onnx.TensorProto]:
    for sparse in sparse_tensors:
        yield sparse.values
        yield sparse.indices


def _location_problem(folder: Path, location: str) -> str | None:
    """Say why ``location`` may not be read as external data, or None if it may."""
    if not location:
        return "is missing or empty"
    if "\x00" in location or _ORT_MEMORY_MARKER in location:
        return "is not a file path"
    if "\\" in location:
        # "a\\b" names a subfolder on Windows and one odd file name elsewhere; a check
        # made on one reading proves nothing about the other.
        return "contains a backslash"
    target = PurePosixPath(location)
    if target.is_absolute() or PureWindowsPath(location).drive:
        return "is an absolute path"
    if ".." in target.parts:
        return "climbs out with '..'"
    if not target.parts:
        return "names the model's folder itself"
    current = folder
    for part in target.parts:
        current = current / part
        try:
            info = os.lstat(current)
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        if stat.S_ISLNK(info.st_mode):
            return f"goes through the symbolic link {str(current)!r}"
    real_folder = os.path.realpath(folder)
    if os.path.commonpath([os.path.realpath(current), real_folder]) != real_folder:
        return "resolves outside the model's folder"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_nlink > 1:
        # A hard link is indistinguishable from the file it aliases, which may live
        # anywhere on the same filesystem.
        return f"has {info.st_nlink} hard links"
    return None


def _range_problem(folder: Path, location: str, entries: Mapping[str, str]) -> str | None:
    """Say why the offset and length do not fit inside the file, or None if they do."""
    for key in ("offset", "length"):
        if key in entries and not _DECIMAL.fullmatch(entries[key]):
            return f"has a malformed {key} {entries[key]!r}"
    size = os.lstat(folder / location).st_size
    offset = int(entries.get("offset", "0"))
    length = int(entries["length"]) if "length" in entries else size - offset
    if offset > size or offset + length > size:
        return f"holds {size} bytes, too few for offset {offset} and length {length}"
    return None
