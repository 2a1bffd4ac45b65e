"""Request bodies for one single-row prediction, in each protocol the servers speak.

The row is the model's first golden input, so every server gets a real
record. Bodies are built once; the load generator sends the same bytes for the
whole run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import tritonclient.http as triton

from keel.registry import ModelMetadata
from keel.signature import to_arrays

JSON = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class Payload:
    """One request: the URL path, the body and the headers that go with it."""

    protocol: str
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...]


def records(metadata: ModelMetadata) -> Payload:
    """``POST /v1/models/{name}/predict`` with one record: keel's records API and the baseline's."""
    record = metadata.golden.inputs[0]
    body = orjson.dumps({"instances": [record]})
    return Payload("records", f"/v1/models/{metadata.name}/predict", body, JSON)


def v2_json(metadata: ModelMetadata) -> Payload:
    """Open Inference Protocol with the input tensor as a JSON ``data`` list."""
    name, row = _input_row(metadata)
    document = {
        "inputs": [
            {
                "name": name,
                "shape": list(row.shape),
                "datatype": "FP32",
                # The record's own numbers, as a client would send them, not float32 noise.
                "data": [metadata.golden.inputs[0][f] for f in metadata.signature.feature_names],
            }
        ]
    }
    return Payload("v2-json", _infer_path(metadata), orjson.dumps(document), JSON)


def v2_binary(metadata: ModelMetadata) -> Payload:
    """Open Inference Protocol binary tensor data, built by Triton's own client library."""
    name, row = _input_row(metadata)
    tensor = triton.InferInput(name, list(row.shape), "FP32")
    tensor.set_data_from_numpy(row, binary_data=True)
    outputs = [
        triton.InferRequestedOutput(o.name, binary_data=True) for o in metadata.signature.outputs
    ]
    body, json_size = triton.InferenceServerClient.generate_request_body([tensor], outputs=outputs)
    headers = [("Content-Type", "application/octet-stream")]
    if json_size is not None:
        headers.append(("Inference-Header-Content-Length", str(json_size)))
    return Payload("v2-binary", _infer_path(metadata), bytes(body), tuple(headers))


def _input_row(metadata: ModelMetadata) -> tuple[str, np.ndarray]:
    arrays = to_arrays(metadata.golden.inputs[:1], metadata.signature)
    if len(arrays) != 1:
        raise ValueError(f"{metadata.ref}: the benchmarks expect a model with one input tensor")
    ((name, row),) = arrays.items()
    if row.dtype != np.float32:
        raise ValueError(f"{metadata.ref}: the benchmarks expect an FP32 input, got {row.dtype}")
    return name, np.ascontiguousarray(row)


def _infer_path(metadata: ModelMetadata) -> str:
    return f"/v2/models/{metadata.name}/infer"
