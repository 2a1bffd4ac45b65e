"""Wire protocols: parse request bytes into typed requests and encode arrays into response bytes."""

from keel.serving.protocols.datatypes import V2_DATATYPES, datatype_of, dtype_of
from keel.serving.protocols.v2 import (
    MAX_ELEMENTS,
    InferInput,
    InferRequest,
    RequestedOutput,
    encode_infer_response,
    error_body,
    parse_infer_request,
)

__all__ = [
    "MAX_ELEMENTS",
    "V2_DATATYPES",
    "InferInput",
    "InferRequest",
    "RequestedOutput",
    "datatype_of",
    "dtype_of",
    "encode_infer_response",
    "error_body",
    "parse_infer_request",
]
