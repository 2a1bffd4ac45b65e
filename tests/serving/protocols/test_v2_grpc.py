"""The gRPC inference messages against the protocol's own generated ones (tritonclient's).

Requests are built with tritonclient's ``service_pb2`` and read with keel's schema;
answers written by keel are read back with tritonclient's ``InferResult``. Every
datatype goes both ways: typed ``contents`` and ``raw_input_contents``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from test_v2 import SAMPLES
from tritonclient.grpc import service_pb2
from tritonclient.utils import serialize_byte_tensor

from keel.errors import ProtocolError
from keel.serving.protocols.grpc_messages import inference
from keel.serving.protocols.v2_grpc import (
    CONTENTS_FIELDS,
    encode_infer_response,
    infer_request_of,
)


def _read(request: Any) -> Any:
    """``request`` (tritonclient's message) on the wire and back as keel reads it."""
    return infer_request_of(inference.ModelInferRequest.FromString(request.SerializeToString()))


def _raw(array: np.ndarray) -> bytes:
    if array.dtype == object:
        return bytes(serialize_byte_tensor(array).item())
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def _typed(field: str, array: np.ndarray) -> list[Any]:
    if field == "bytes_contents":
        return [element.encode() for element in array.ravel()]
    return array.ravel().tolist()


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_every_datatype_arrives_raw_as_sent(datatype: str) -> None:
    array = SAMPLES[datatype]
    request = service_pb2.ModelInferRequest(model_name="m", id="r1")
    request.inputs.add(name="x", datatype=datatype, shape=array.shape)
    request.raw_input_contents.append(_raw(array))
    parsed = _read(request)
    [tensor] = parsed.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, array.shape)
    np.testing.assert_array_equal(tensor.data, array)
    assert not tensor.data.flags.writeable
    assert parsed.id == "r1"


@pytest.mark.parametrize("datatype", sorted(set(SAMPLES) - {"FP16"}))
def test_every_datatype_arrives_typed_as_sent(datatype: str) -> None:
    array = SAMPLES[datatype]
    field = CONTENTS_FIELDS[datatype]
    request = service_pb2.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=array.shape)
    getattr(tensor.contents, field).extend(_typed(field, array))
    [parsed] = _read(request).inputs
    assert parsed.data.dtype == (object if datatype == "BYTES" else array.dtype)
    np.testing.assert_array_equal(parsed.data, array)


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_every_datatype_answers_as_tritonclient_reads_it(datatype: str) -> None:
    array = SAMPLES[datatype]
    encoded = encode_infer_response(
        model_name="m", model_version="v1", request_id="r1", outputs={"y": array}
    )
    result = grpcclient.InferResult(service_pb2.ModelInferResponse.FromString(encoded))
    answer = result.as_numpy("y")
    if datatype == "BYTES":
        answer = np.vectorize(bytes.decode, otypes=[object])(answer)
    np.testing.assert_array_equal(answer, array)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("m", "v1", "r1")
    assert response.outputs[0].datatype == datatype


def _one_input(datatype: str, shape: list[int]) -> tuple[Any, Any]:
    request = service_pb2.ModelInferRequest(model_name="m")
    return request, request.inputs.add(name="x", datatype=datatype, shape=shape)


def _out_of_range(r: Any, t: Any) -> None:
    t.contents.int_contents[0] = 128


def _wrong_field(r: Any, t: Any) -> None:
    t.ClearField("contents")
    t.contents.int64_contents.extend([1, 2])


def _too_few(r: Any, t: Any) -> None:
    del t.contents.int_contents[1]


def _raw_for_two_inputs(r: Any, t: Any) -> None:
    t.ClearField("contents")
    r.raw_input_contents.extend([b"\0\0", b"\0"])


def _raw_and_typed(r: Any, t: Any) -> None:
    r.raw_input_contents.append(b"\0\0")


def _parameter_without_value(r: Any, t: Any) -> None:
    t.parameters["p"].Clear()


def _shared_memory(r: Any, t: Any) -> None:
    t.parameters["shared_memory_region"].string_param = "region"


def _input_twice(r: Any, t: Any) -> None:
    r.inputs.add().CopyFrom(t)


def _output_twice(r: Any, t: Any) -> None:
    r.outputs.add(name="y")
    r.outputs.add(name="y")


def _computed_at_not_json(r: Any, t: Any) -> None:
    r.parameters["computed_at"].string_param = "yesterday"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_out_of_range, "outside the range of INT8"),
        (_wrong_field, "INT8 data goes in int_contents, not int64_contents"),
        (_too_few, "its shape needs 2 elements but int_contents has 1"),
        (_raw_for_two_inputs, "raw_input_contents has 2 entries but the request has 1 inputs"),
        (_raw_and_typed, "send every input one way"),
        (_parameter_without_value, "input 'x' parameter 'p' has no value"),
        (_shared_memory, "shared-memory inputs are not supported"),
        (_input_twice, "input 'x' appears more than once"),
        (_output_twice, "output 'y' is requested more than once"),
        (_computed_at_not_json, "'computed_at' must be a JSON object"),
    ],
)
def test_a_malformed_request_is_refused_naming_what_is_wrong(change: Any, message: str) -> None:
    request, tensor = _one_input("INT8", [2])
    tensor.contents.int_contents.extend([1, 2])
    _read(request)  # well formed as it is
    change(request, tensor)
    with pytest.raises(ProtocolError, match=re.escape(message)):
        _read(request)


def test_fp16_has_no_typed_field_and_a_shape_is_capped_before_allocating() -> None:
    request, tensor = _one_input("FP16", [2])
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    with pytest.raises(ProtocolError, match="FP16 data goes in raw_input_contents"):
        _read(request)
    request, tensor = _one_input("FP32", [2**40, 2**40])
    with pytest.raises(ProtocolError, match="elements"):
        _read(request)
    empty = service_pb2.ModelInferRequest(model_name="m")
    with pytest.raises(ProtocolError, match="'inputs' must be a non-empty list"):
        _read(empty)


def test_computed_at_comes_as_a_json_string_and_parameters_as_values() -> None:
    request, tensor = _one_input("INT8", [2])
    tensor.contents.int_contents.extend([1, 2])
    request.parameters["computed_at"].string_param = '{"age": 1700000000}'
    request.parameters["flag"].bool_param = True
    request.parameters["ratio"].double_param = 0.5
    parsed = _read(request)
    assert parsed.parameters == {"computed_at": {"age": 1700000000}, "flag": True, "ratio": 0.5}
    assert parsed.outputs is None
