"""``GET /v2/models/{name}[/versions/{v}]/config``: what keel knows of a model, in Triton's shape.

tritonclient's ``get_model_config`` asks for it, and tools written for Triton read
its fields: the platform, ``max_batch_size``, inputs and outputs with Triton's
``TYPE_*`` data types and their dims *without* the batch dimension (as Triton
writes a model that batches), and ``dynamic_batching`` with the queue delay.
keel's own facts (the version label, the registry version, the aliases) are under
``parameters`` as Triton's string parameters, where such tools ignore them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import NotReady
from keel.serving.protocols import datatype_of
from keel.serving.served_version import ServedVersion
from keel.settings import BatchingSettings
from keel.web.context import state_of, target_version

# Triton's names for the Open Inference Protocol's datatypes where the two differ.
_TRITON_TYPES = {"BYTES": "TYPE_STRING"}


async def model_config(request: Request) -> Response:
    state = state_of(request)
    version = target_version(request, state)
    body = orjson.dumps(config_of(version, state.settings.batching))
    return Response(body, media_type="application/json")


def config_of(version: ServedVersion, batching: BatchingSettings) -> dict[str, Any]:
    """The Triton model configuration of ``version``, served with ``batching``."""
    loaded = version.loaded
    if loaded is None:
        raise NotReady(f"{version.name} version {version.label} is not loaded ({version.state})")
    runtime = loaded.runtime
    metadata = version.metadata
    onnx = metadata.artifact.format == "onnx"
    return {
        "name": version.name,
        "platform": "onnxruntime_onnx" if onnx else "keel_safetensors",
        "backend": "onnxruntime" if onnx else "keel",
        "max_batch_size": batching.max_batch_size,
        "input": [_tensor(s.name, s.dtype, s.shape) for s in runtime.inputs],
        "output": [_tensor(s.name, s.dtype, s.shape) for s in runtime.outputs],
        "dynamic_batching": {
            "max_queue_delay_microseconds": round(batching.max_queue_delay_ms * 1000),
            "preserve_ordering": True,
        },
        "parameters": {
            "keel_version": {"string_value": version.label},
            "keel_registry_version": {"string_value": metadata.version},
            "keel_aliases": {"string_value": ",".join(sorted(version.aliases))},
            "keel_state": {"string_value": version.state.value},
        },
    }


def _tensor(name: str, dtype: str, shape: tuple[int | None, ...]) -> dict[str, Any]:
    datatype = datatype_of(np.dtype(dtype))
    # Triton leaves the batch dimension out of dims; a tensor of one value per row has
    # dims [1] and a reshape to no dims at all, as Triton writes such a tensor.
    dims = [-1 if d is None else d for d in shape[1:]]
    tensor: dict[str, Any] = {
        "name": name,
        "data_type": _TRITON_TYPES.get(datatype, f"TYPE_{datatype}"),
        "dims": dims or [1],
    }
    if not dims:
        tensor["reshape"] = {"shape": []}
    return tensor


def model_config_routes() -> list[Route]:
    return [
        Route("/v2/models/{name}/config", model_config, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/config", model_config, methods=["GET"]),
    ]
