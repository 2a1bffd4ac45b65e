"""Open Inference Protocol gRPC ``ModelInfer`` as the data plane's codec.

The gRPC edge (``keel.web.grpc_edge``) has the request message parsed already,
for the model name and version it must resolve before anything else, so each
request gets a codec holding its message; from there it is REST's path: the same
``InferRequest``, the same signature check (a request that fits the version exactly passes the v2
fast path's precomputed check, as REST's do; any other gets the contract's, which
names every problem), freshness and output selection.
"""

from __future__ import annotations

from typing import Any

from keel.errors import NotReady
from keel.serving.batcher import Tensors
from keel.serving.calls import Call
from keel.serving.data_plane import Decoded
from keel.serving.protocols.v2 import InferRequest
from keel.serving.protocols.v2_grpc import encode_infer_response, infer_request_of
from keel.serving.served_version import ServedVersion
from keel.serving.v2_infer import check_freshness, select_outputs


class GrpcInferCodec:
    """The codec of one ``ModelInferRequest``: its tensors in, a serialised response out."""

    __slots__ = ("message",)

    def __init__(self, message: Any) -> None:
        self.message = message

    def decode(self, version: ServedVersion, call: Call) -> Decoded:
        """The input tensors, checked against the version's contract; the request kept."""
        parsed = infer_request_of(self.message)
        inputs = {tensor.name: tensor.data for tensor in parsed.inputs}
        fast = version.v2_fast_path
        if fast is None or not fast.accepts(parsed.inputs):
            contract = version.contract
            if contract is None:
                raise NotReady(f"{version.name} version {version.label} is not ready")
            contract.check(inputs)
        check_freshness(version, parsed)
        return Decoded(inputs, parsed.id, parsed)

    def encode(self, version: ServedVersion, request: Decoded, outputs: Tensors) -> bytes:
        """The outputs the request asked for, every one's data raw."""
        parsed: InferRequest = request.detail
        selected, _ = select_outputs(parsed, outputs)
        return encode_infer_response(
            model_name=version.name,
            model_version=version.label,
            request_id=parsed.id,
            outputs=selected,
        )
