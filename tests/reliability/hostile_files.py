"""Hostile model files, and registry versions planted around them the way an attacker would.

The pickle payloads are live: unpickled, they create a marker file (see
``PLANTED_CODE_PROOF``); the tests assert no marker ever appears.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save

from keel.registry import Registry
from runtimes.test_onnx_external import save_with_external_data, set_external_data
from runtimes.test_sniff import TouchOnLoad

PLANTED_VERSION = "0" * 40 + "/20260101T000000.000000Z"


def pickle_payload(marker: Path, protocol: int) -> bytes:
    """A pickle whose loading creates ``marker``."""
    return pickle.dumps(TouchOnLoad(marker), protocol=protocol)


def torch_archive(marker: Path) -> bytes:
    """A zip laid out as ``torch.save`` writes one: stored members under ``archive/``, the
    object graph in ``data.pkl`` (here the payload) and tensor storages beside it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle_payload(marker, protocol=2))
        archive.writestr("archive/byteorder", b"little")
        archive.writestr("archive/data/0", struct.pack("<4f", 0.5, -0.5, 1.0, 2.0))
        archive.writestr("archive/version", b"3\n")
    return buffer.getvalue()


def joblib_pickle(marker: Path) -> bytes:
    """The payload compressed the way ``joblib.dump(..., compress="zlib")`` writes it."""
    return zlib.compress(pickle_payload(marker, protocol=4))


def unpickled(data: bytes) -> None:
    """Load a payload the way a careless loader would: the control that it is live."""
    if data.startswith(b"PK"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            data = archive.read("archive/data.pkl")
    elif data[:1] == b"\x78":
        data = zlib.decompress(data)
    # The point: show what loading would have done.
    pickle.loads(data)


def onnx_with_external_data_outside(folder: Path, elsewhere: Path, where: str) -> Path:
    """A small ONNX model in ``folder`` whose weights live in ``elsewhere``, outside it,
    reached by an absolute path, by climbing out with '..', or through a symbolic link."""
    path = save_with_external_data(folder)
    elsewhere.mkdir(parents=True, exist_ok=True)
    weights = (folder / "weights.bin").rename(elsewhere / "weights.bin")
    if where == "symlink":
        (folder / "weights.bin").symlink_to(weights)
        return path
    location = str(weights) if where == "absolute" else os.path.relpath(weights, folder)
    set_external_data(path, location=location)
    return path


EXTERNAL_DATA_OUTSIDE = {
    "at an absolute path": "absolute",
    "climbing out with '..'": "climb",
    "through a symbolic link": "symlink",
}


# -- safetensors whose header lies, made from a real one ---------------------------


def real_safetensors() -> bytes:
    """Weights of the digits MLP's shapes (64-64-10), as the safetensors library writes them."""
    layers = {
        "layers.0.weight": np.zeros((64, 64), np.float32),
        "layers.0.bias": np.zeros(64, np.float32),
        "layers.1.weight": np.zeros((64, 10), np.float32),
        "layers.1.bias": np.zeros(10, np.float32),
    }
    return bytes(save(layers, metadata={"architecture": "mlp-64-64-10"}))


def _split(real: bytes) -> tuple[dict[str, Any], bytes]:
    (length,) = struct.unpack("<Q", real[:8])
    return json.loads(real[8 : 8 + length]), real[8 + length :]


def _join(header: Mapping[str, Any], data: bytes, length: int | None = None) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded) if length is None else length) + encoded + data


def header_length_past_the_end(real: bytes) -> bytes:
    return struct.pack("<Q", len(real)) + real[8:]


def header_length_over_the_limit(real: bytes) -> bytes:
    return struct.pack("<Q", 200 * 1024 * 1024) + real[8:]


def header_length_short_of_the_header(real: bytes) -> bytes:
    (length,) = struct.unpack("<Q", real[:8])
    return struct.pack("<Q", length // 2) + real[8:]


def offsets_outside_the_file(real: bytes) -> bytes:
    header, data = _split(real)
    name = next(n for n in header if n != "__metadata__")
    begin, _ = header[name]["data_offsets"]
    header[name]["data_offsets"] = [begin, len(data) + 4096]
    return _join(header, data)


def overlapping_offsets(real: bytes) -> bytes:
    header, data = _split(real)
    name = next(n for n in header if n != "__metadata__")
    header["shadow"] = dict(header[name])
    return _join(header, data)


SAFETENSORS_LIES: dict[str, Callable[[bytes], bytes]] = {
    "header length past the end of the file": header_length_past_the_end,
    "oversized header (200 MiB declared)": header_length_over_the_limit,
    "header length short of the header": header_length_short_of_the_header,
    "tensor offsets outside the file": offsets_outside_the_file,
    "overlapping tensor offsets": overlapping_offsets,
}


# -- registry versions ----------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A real published version whose metadata a planted version copies."""

    metadata: dict[str, Any]
    folder: Path

    @classmethod
    def of(cls, registry: Path, ref: str) -> Template:
        meta = Registry(registry).resolve(ref)
        folder = registry / meta.name / meta.version
        return cls(json.loads((folder / "metadata.json").read_text()), folder)

    def artifact(self) -> bytes:
        return (self.folder / self.metadata["artifact"]["path"]).read_bytes()


def version_folder(registry: Path, name: str) -> Path:
    """Where ``plant_version`` puts the planted version of ``name``."""
    return registry / name / PLANTED_VERSION


def plant_version(
    registry: Path,
    name: str,
    template: Template,
    files: Mapping[str, bytes],
    artifact: str,
) -> Path:
    """Write a version of ``name`` holding ``files``, recorded with their true hashes (as a
    publisher, or someone with write access to the registry, would) and aliased production.

    Anything else already in the version's folder stays there, unrecorded."""
    folder = version_folder(registry, name)
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    metadata = dict(template.metadata)
    metadata.update(
        name=name,
        version=PLANTED_VERSION,
        artifact={**template.metadata["artifact"], "path": artifact},
        files={
            file_name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for file_name, data in files.items()
        },
    )
    (folder / "metadata.json").write_text(json.dumps(metadata))
    Registry(registry).set_alias(name, "production", PLANTED_VERSION, reason="planted by a test")
    return folder
