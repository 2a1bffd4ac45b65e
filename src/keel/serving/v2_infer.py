"""Open Inference Protocol ``infer``: JSON or binary tensor data through the model's batcher.

Served at ``/v2/models/{name}[/versions/{version}]/infer`` by ``inference_front``,
through the data plane (``V2_INFER`` is its codec).
"""

from __future__ import annotations

import time

import numpy as np

from keel.errors import InvalidRequest, NotReady, ProtocolError
from keel.serving.batcher import Tensors
from keel.serving.calls import BINARY, Call, Reply
from keel.serving.data_plane import Decoded
from keel.serving.protocols import InferRequest, encode_infer_response, parse_infer_request
from keel.serving.served_version import ServedVersion
from keel.signature import COMPUTED_AT_PARAMETER, freshness_of

BINARY_HEADER = "inference-header-content-length"
_BINARY_HEADER_NAME = BINARY_HEADER.encode()


class V2InferCodec:
    """Open Inference Protocol ``infer`` as the data plane's codec: JSON or binary tensors."""

    def decode(self, version: ServedVersion, call: Call) -> Decoded:
        """The input tensors, checked against the version's contract; the request kept."""
        parsed, inputs = _decode(version, call)
        check_freshness(version, parsed)
        return Decoded(inputs, parsed.id, parsed)

    def encode(self, version: ServedVersion, request: Decoded, outputs: Tensors) -> Reply:
        """The outputs the request asked for, in the encoding it asked for."""
        parsed: InferRequest = request.detail
        selected, binary = select_outputs(parsed, outputs)
        payload, json_length = encode_infer_response(
            model_name=version.name,
            model_version=version.label,
            request_id=parsed.id,
            outputs=selected,
            binary=binary,
        )
        if json_length is None:
            return Reply(200, payload, headers=[version.label_header])
        headers = [version.label_header, (_BINARY_HEADER_NAME, str(json_length).encode())]
        return Reply(200, payload, content_type=BINARY, headers=headers)


V2_INFER = V2InferCodec()


def _decode(version: ServedVersion, call: Call) -> tuple[InferRequest, dict[str, np.ndarray]]:
    """The request and its input tensors, checked against the version's contract."""
    json_length = _json_length(call)
    fast = version.v2_fast_path
    parsed = None if fast is None else fast.decode(call.body, json_length)
    if parsed is not None:
        return parsed, {tensor.name: tensor.data for tensor in parsed.inputs}
    parsed = parse_infer_request(call.body, json_length)
    inputs = {tensor.name: tensor.data for tensor in parsed.inputs}
    contract = version.contract
    if contract is None:
        raise NotReady(f"{version.name} version {version.label} is not ready")
    contract.check(inputs)
    return parsed, inputs


def check_freshness(version: ServedVersion, parsed: InferRequest) -> None:
    """Observe the ages in the ``computed_at`` parameter; refuse stale features by policy."""
    freshness = freshness_of(version.metadata.signature)
    computed_at = parsed.parameters.get(COMPUTED_AT_PARAMETER)
    if freshness is None or computed_at is None:
        return
    rows = parsed.inputs[0].data.shape[0] if parsed.inputs else 0
    result = freshness.check_request(computed_at, rows, time.time())
    version.metrics.freshness(result)
    if result.errors:
        raise InvalidRequest(result.errors)


def _json_length(call: Call) -> int | None:
    raw = call.headers.get(BINARY_HEADER)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ProtocolError(f"Inference-Header-Content-Length {raw!r} is not a number") from None


def select_outputs(
    parsed: InferRequest, outputs: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, bool] | bool]:
    """The outputs the client asked for (all when it names none), and which go back binary."""
    if parsed.outputs is None:
        return outputs, parsed.binary_data_output
    default = parsed.binary_data_output
    selected: dict[str, np.ndarray] = {}
    binary: dict[str, bool] = {}
    # The parser refuses a name asked for twice, so each output's own choice is its
    # only one (what ``InferRequest.wants_binary`` finds).
    for name, binary_data, _ in parsed.outputs:
        value = outputs.get(name)
        if value is None:
            unknown = [o.name for o in parsed.outputs if o.name not in outputs]
            raise ProtocolError(f"unknown output(s) {unknown} (the model has {sorted(outputs)})")
        selected[name] = value
        binary[name] = default if binary_data is None else binary_data
    return selected, binary
