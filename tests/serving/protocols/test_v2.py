"""The v2 codec against Triton's own HTTP client, and against hostile bodies."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import np_to_triton_dtype

from keel.errors import ProtocolError
from keel.serving.protocols import (
    MAX_ELEMENTS,
    InferRequest,
    RequestedOutput,
    encode_infer_response,
    error_body,
    parse_infer_request,
)

Client = httpclient.InferenceServerClient


def _ints(dtype: type[np.integer[Any]]) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.array([[info.min, info.max, 0], [1, info.max - 1, info.min + 1]], dtype=dtype)


SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": _ints(np.uint8),
    "UINT16": _ints(np.uint16),
    "UINT32": _ints(np.uint32),
    "UINT64": _ints(np.uint64),
    "INT8": _ints(np.int8),
    "INT16": _ints(np.int16),
    "INT32": _ints(np.int32),
    "INT64": _ints(np.int64),
    "FP16": np.array([[0.1, -65504, 65504], [6e-8, -0.0, 1 / 3]], dtype=np.float16),
    "FP32": np.array([[0.1, 3.4028235e38, -1.4e-45], [-0.0, 1 / 3, 1e-30]], dtype=np.float32),
    "FP64": np.array([[0.1, 1.7976931348623157e308, 5e-324], [-0.0, 1 / 3, -1e300]]),
    "BYTES": np.array([["", "héllo", "日本語"], ["a\x00b", "x" * 300, "🙂"]], dtype=object),
}


def _request_body(
    tensors: list[tuple[str, np.ndarray, bool]], **options: Any
) -> tuple[bytes, int | None]:
    """A request body written by tritonclient, with each tensor as binary data or JSON."""
    inputs = []
    for name, array, binary in tensors:
        tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    body, json_length = Client.generate_request_body(inputs, **options)
    return body, json_length


def _assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if expected.dtype == np.object_:
        assert actual.tolist() == expected.tolist()
    else:
        # Byte equality: -0.0 must stay -0.0, and NaN equal to itself.
        assert actual.tobytes() == expected.tobytes()


def _raw(document: Any, binary: bytes = b"") -> tuple[bytes, int | None]:
    header = orjson.dumps(document)
    return header + binary, (len(header) if binary else None)


def _input(**fields: Any) -> dict[str, Any]:
    return {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]} | fields


def _refused(document: Any, binary: bytes = b"", match: str = "") -> None:
    body, json_length = _raw(document, binary)
    with pytest.raises(ProtocolError, match=match):
        parse_infer_request(body, json_length)


# --- requests written by tritonclient -----------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_from_tritonclient_is_recovered_exactly(datatype: str, binary: bool) -> None:
    expected = SAMPLES[datatype]
    body, json_length = _request_body([("x", expected, binary)])

    request = parse_infer_request(body, json_length)

    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, (2, 3))
    _assert_same(tensor.data, expected)


def test_binary_and_json_inputs_mix_and_binary_parts_follow_input_order() -> None:
    first = np.arange(6, dtype=np.float32).reshape(2, 3)
    middle = np.array([[1, 2]], dtype=np.int64)
    last = np.array(["z", "é"], dtype=object)
    body, json_length = _request_body(
        [("first", first, True), ("middle", middle, False), ("last", last, True)]
    )

    request = parse_infer_request(body, json_length)

    assert [tensor.name for tensor in request.inputs] == ["first", "middle", "last"]
    for tensor, expected in zip(request.inputs, [first, middle, last], strict=True):
        _assert_same(tensor.data, expected)


def test_request_id_parameters_and_requested_outputs_are_kept() -> None:
    inputs = [httpclient.InferInput("x", [1], "INT32").set_data_from_numpy(np.array([7], np.int32))]
    outputs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=True),
        httpclient.InferRequestedOutput("label", binary_data=False),
    ]
    body, json_length = Client.generate_request_body(
        inputs, outputs=outputs, request_id="req-1", parameters={"tenant": "a"}
    )

    request = parse_infer_request(body, json_length)

    assert request.id == "req-1"
    assert request.parameters == {"tenant": "a"}
    assert request.outputs is not None
    assert [(o.name, o.binary_data) for o in request.outputs] == [
        ("probabilities", True),
        ("label", False),
    ]
    assert not request.binary_data_output
    assert request.wants_binary("probabilities")
    assert not request.wants_binary("label")


def test_no_requested_outputs_means_all_with_tritonclients_binary_default() -> None:
    body, json_length = _request_body([("x", SAMPLES["FP32"], False)])

    request = parse_infer_request(body, json_length)

    assert request.outputs is None
    assert request.id is None
    assert request.binary_data_output
    assert request.wants_binary("anything")


def test_an_output_without_binary_data_follows_the_request_default() -> None:
    document = {
        "inputs": [_input()],
        "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
        "parameters": {"binary_data_output": True},
    }
    request = parse_infer_request(orjson.dumps(document))

    assert request.outputs == (
        RequestedOutput("a", None, {}),
        RequestedOutput("b", False, {"binary_data": False}),
    )
    assert request.wants_binary("a")
    assert not request.wants_binary("b")


def test_an_empty_outputs_list_means_every_output() -> None:
    request = parse_infer_request(orjson.dumps({"inputs": [_input()], "outputs": []}))

    assert request.outputs is None


def test_nested_data_that_matches_the_shape_is_read_row_major() -> None:
    document = {"inputs": [_input(shape=[2, 3], data=[[1, 2, 3], [4, 5, 6]], datatype="INT8")]}

    (tensor,) = parse_infer_request(orjson.dumps(document)).inputs

    _assert_same(tensor.data, np.arange(1, 7, dtype=np.int8).reshape(2, 3))


def test_scalar_and_empty_tensors_decode() -> None:
    document = {
        "inputs": [
            _input(name="scalar", shape=[], data=[2.5]),
            _input(name="empty", shape=[0, 3], data=[]),
            _input(name="nothing", shape=[2, 0], data=[[], []], datatype="BYTES"),
            _input(name="binary", shape=[0, 4], data=None, parameters={"binary_data_size": 0}),
        ]
    }
    body, json_length = _raw(document)

    scalar, empty, nothing, binary = parse_infer_request(body, json_length).inputs

    _assert_same(scalar.data, np.array(2.5, dtype=np.float32))
    _assert_same(empty.data, np.empty((0, 3), dtype=np.float32))
    _assert_same(nothing.data, np.empty((2, 0), dtype=object))
    _assert_same(binary.data, np.empty((0, 4), dtype=np.float32))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_decoded_arrays_are_read_only(binary: bool) -> None:
    body, json_length = _request_body([("x", SAMPLES["INT32"], binary)])

    (tensor,) = parse_infer_request(body, json_length).inputs

    with pytest.raises(ValueError, match="read-only"):
        tensor.data[0, 0] = 1


@pytest.mark.parametrize(
    ("document", "match"),
    [
        (
            {"inputs": [_input()], "outputz": [{"name": "y"}]},
            r"the request: unknown key 'outputz' \(did you mean 'outputs'\?\); known: 'id', "
            r"'inputs', 'outputs', 'parameters'",
        ),
        (
            {"inputs": [_input(paramters={"binary_data_size": 8})]},
            r"input 'x': unknown key 'paramters' \(did you mean 'parameters'\?\)",
        ),
        ({"inputs": [_input(foo=1)]}, r"input 'x': unknown key 'foo'; known: 'data', 'datatype'"),
        (
            {"inputs": [_input()], "outputs": [{"name": "y", "binary_data": True}]},
            r"output 'y': unknown key 'binary_data'; known: 'name', 'parameters'",
        ),
        # Found by the hostile-request fuzzing: the refusal must name 'inputs' as a key.
        ({"": 0}, r"the request: unknown key ''; known: 'id', 'inputs', 'outputs'"),
    ],
    ids=["top-level", "in-an-input", "unlike-any", "in-an-output", "empty-key"],
)
def test_a_key_the_protocol_does_not_define_is_refused_naming_it(
    document: dict[str, Any], match: str
) -> None:
    # Ignored, a misspelt key would be a request that asked for nothing (every output,
    # JSON instead of binary) answered 200.
    _refused(document, match=match)


def test_unknown_parameters_are_left_to_the_extensions_that_define_them() -> None:
    document = {"inputs": [_input(parameters={"a": 1})], "parameters": {"future": [1]}}

    request = parse_infer_request(orjson.dumps(document))

    assert isinstance(request, InferRequest)
    assert request.inputs[0].name == "x"


# --- hostile and malformed requests -------------------------------------------------------------


@pytest.mark.parametrize("json_length", [0, -1, 10_000, True, "12", 1.5])
def test_a_json_length_outside_the_body_is_refused(json_length: Any) -> None:
    body, _ = _request_body([("x", SAMPLES["FP32"], True)])

    with pytest.raises(ProtocolError, match="Inference-Header-Content-Length"):
        parse_infer_request(body, json_length)


def test_a_json_length_that_cuts_the_json_short_is_refused() -> None:
    body, json_length = _request_body([("x", SAMPLES["FP32"], True)])
    assert json_length is not None

    with pytest.raises(ProtocolError, match="malformed"):
        parse_infer_request(body, json_length - 1)


@pytest.mark.parametrize("size", [25, 10_000], ids=["one-more", "far-more"])
def test_a_binary_data_size_larger_than_the_body_is_refused(size: int) -> None:
    body = SAMPLES["FP32"].tobytes()  # 24 bytes

    _refused(
        {"inputs": [_input(shape=[2, 3], data=None, parameters={"binary_data_size": size})]},
        body,
        match="only 24 remain",
    )


def test_bytes_left_over_after_every_binary_input_are_refused() -> None:
    _refused(
        {"inputs": [_input(shape=[2, 3], data=None, parameters={"binary_data_size": 24})]},
        SAMPLES["FP32"].tobytes() + b"\x00",
        match="add up to 24",
    )


def test_binary_bytes_with_no_binary_input_are_refused() -> None:
    _refused({"inputs": [_input()]}, b"\x00\x00\x00\x00", match="add up to 0")


def test_a_binary_data_size_that_disagrees_with_the_shape_is_refused() -> None:
    _refused(
        {"inputs": [_input(shape=[2, 3], data=None, parameters={"binary_data_size": 20})]},
        bytes(20),
        match="take 24",
    )


@pytest.mark.parametrize("size", [-1, 1.5, "8", True])
def test_a_binary_data_size_that_is_not_a_count_is_refused(size: Any) -> None:
    _refused(
        {"inputs": [_input(data=None, parameters={"binary_data_size": size})]},
        bytes(8),
        match="non-negative integer",
    )


def test_an_input_with_both_data_and_binary_data_is_refused() -> None:
    _refused(
        {"inputs": [_input(parameters={"binary_data_size": 8})]}, bytes(8), match="both 'data'"
    )


def test_an_input_with_no_data_at_all_is_refused() -> None:
    _refused({"inputs": [_input(data=None)]}, match="neither 'data'")


@pytest.mark.parametrize(
    ("count", "elements", "match"),
    [
        (1, b"\x05\x00\x00\x00abc", "claims 5 bytes but only 3 remain"),
        (2, b"\x03\x00\x00\x00abc\x01\x00", "element 1 has no room for its length"),
        (1, b"\xff\xff\xff\xffa", "claims 4294967295 bytes"),
        (2, b"\x01\x00\x00\x00a\x01\x00\x00\x00b\x00", "take 10"),
        (2, b"\x01\x00\x00\x00a\x02\x00\x00\x00\xc3\x28", "element 1 is not valid UTF-8"),
    ],
    ids=["past-the-end", "cut-length", "huge-length", "trailing", "bad-utf8"],
)
def test_malformed_binary_bytes_elements_are_refused(
    count: int, elements: bytes, match: str
) -> None:
    tensor = _input(datatype="BYTES", shape=[count], data=None)
    tensor["parameters"] = {"binary_data_size": len(elements)}

    _refused({"inputs": [tensor]}, elements, match=match)


def test_binary_bytes_with_fewer_elements_than_the_shape_are_refused() -> None:
    elements = b"\x01\x00\x00\x00a"
    tensor = _input(datatype="BYTES", shape=[3], data=None)
    tensor["parameters"] = {"binary_data_size": len(elements)}

    _refused({"inputs": [tensor]}, elements, match="too few")


def test_a_binary_bool_that_is_neither_0_nor_1_is_refused() -> None:
    tensor = _input(datatype="BOOL", shape=[3], data=None, parameters={"binary_data_size": 3})

    _refused({"inputs": [tensor]}, b"\x00\x01\x02", match="neither 0 nor 1")


@pytest.mark.parametrize(
    ("shape", "data", "match"),
    [
        ([1, 3], [1.0, 2.0], "has 2 elements but shape \\[1, 3\\] needs 3"),
        ([2, 2], [1.0, 2.0, 3.0, 4.0, 5.0], "has 5 elements"),
        ([2, 2], [[1.0, 2.0], [3.0]], "at depth 1"),
        ([2, 2], [[1.0, 2.0, 3.0, 4.0]], "at depth 0"),
        ([4], [[1.0, 2.0], [3.0, 4.0]], "at depth 0"),
        ([2, 2], [[1.0, 2.0], 3.0, 4.0], "at depth 0"),
        ([2], [[1.0], [2.0]], "cannot hold a nested list"),
        ([2, 1], [[[1.0]], [[2.0]]], "cannot hold a nested list"),
    ],
)
def test_data_that_disagrees_with_the_shape_is_refused(
    shape: list[int], data: list[Any], match: str
) -> None:
    _refused({"inputs": [_input(shape=shape, data=data)]}, match=match)


@pytest.mark.parametrize(
    "shape",
    [[-1, 2], [2, -3], [1.0, 2], [True, 2], ["2"], [None], "2", 2, None, [1] * 65],
)
def test_a_shape_that_is_not_a_list_of_counts_is_refused(shape: Any) -> None:
    _refused({"inputs": [_input(shape=shape)]}, match="'shape' must be a list")


@pytest.mark.parametrize(
    "shape",
    [[2**40, 2**40], [MAX_ELEMENTS + 1], [0, 2**40, 2**40], [2**62, 2**62, 2**62, 2**62]],
)
def test_a_gigantic_shape_with_tiny_data_is_refused_without_allocating(shape: list[int]) -> None:
    for parameters, binary in [(None, b""), ({"binary_data_size": 4}, bytes(4))]:
        document = {"inputs": [_input(shape=shape, data=None if binary else [1.0])]}
        document["inputs"][0]["parameters"] = parameters
        tracemalloc.start()
        try:
            _refused(document, binary, match="elements")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1_000_000


@pytest.mark.parametrize("datatype", ["FP32", "INT8", "BYTES"])
def test_a_large_shape_within_the_cap_but_with_tiny_data_does_not_allocate(datatype: str) -> None:
    shapes_and_bodies = [
        (_input(datatype=datatype, shape=[2**31], data=["a"]), b""),
        (
            _input(datatype=datatype, shape=[2**31], data=None, parameters={"binary_data_size": 8}),
            bytes(8),
        ),
    ]
    for tensor, binary in shapes_and_bodies:
        tracemalloc.start()
        try:
            _refused({"inputs": [tensor]}, binary, match="input 'x'")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1_000_000


@pytest.mark.parametrize(
    ("datatype", "value", "match"),
    [
        ("FP32", "1.5", "FP32 data cannot hold a string"),
        ("FP32", True, "FP32 data cannot hold a boolean"),
        ("FP64", None, "FP64 data cannot hold null"),
        ("INT32", True, "INT32 data cannot hold a boolean"),
        ("INT64", 1.0, "INT64 data cannot hold a number with a fraction"),
        ("INT64", 1.5, "INT64 data cannot hold a number with a fraction"),
        ("UINT8", "7", "UINT8 data cannot hold a string"),
        ("BOOL", 1, "BOOL data cannot hold an integer"),
        ("BOOL", "true", "BOOL data cannot hold a string"),
        ("BYTES", 1, "BYTES data cannot hold an integer"),
        ("BYTES", {"b64": "AA=="}, "BYTES data cannot hold an object"),
        ("INT8", 128, "outside the range of INT8 \\[-128, 127\\]"),
        ("INT8", -129, "outside the range of INT8"),
        ("UINT8", -1, "outside the range of UINT8"),
        ("UINT8", 256, "outside the range of UINT8"),
        ("UINT64", -1, "outside the range of UINT64"),
        ("INT64", 2**63, "outside the range of INT64"),
        ("FP32", 1e39, "outside the range of FP32"),
        ("FP32", -3.5e38, "outside the range of FP32"),
        ("FP16", 70000, "outside the range of FP16"),
        ("FP16", 65520.0, "outside the range of FP16"),
    ],
)
def test_an_element_that_does_not_fit_the_datatype_is_refused(
    datatype: str, value: Any, match: str
) -> None:
    good = {"BOOL": True, "BYTES": "ok"}.get(datatype, 1)
    tensor = _input(datatype=datatype, shape=[2], data=[good, value])

    _refused({"inputs": [tensor]}, match=f"input 'x': (a value is )?{match}")


def test_an_integer_past_64_bits_is_read_as_a_number_and_refused_for_int64() -> None:
    body = b'{"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], '
    body += b'"data": [18446744073709551616]}]}'

    with pytest.raises(ProtocolError, match="INT64 data cannot hold a number"):
        parse_infer_request(body)


def test_values_that_round_to_the_largest_finite_float_are_accepted() -> None:
    tensors = [
        _input(name="half", datatype="FP16", shape=[1], data=[65519.0]),
        _input(name="single", datatype="FP32", shape=[1], data=[3.4028235e38]),
    ]

    half, single = parse_infer_request(orjson.dumps({"inputs": tensors})).inputs

    assert half.data[0] == np.finfo(np.float16).max
    assert single.data[0] == np.finfo(np.float32).max


@pytest.mark.parametrize("where", ["data", "body"])
def test_very_deep_nesting_is_a_protocol_error(where: str) -> None:
    deep = b"[" * 10_000 + b"]" * 10_000
    if where == "body":
        body = deep
    else:
        body = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":' + deep + b"}]}"

    with pytest.raises(ProtocolError, match="malformed"):
        parse_infer_request(body)


def test_nesting_under_the_json_limit_but_deeper_than_the_shape_is_refused() -> None:
    deep: Any = [1.0]
    for _ in range(200):
        deep = [deep]

    _refused({"inputs": [_input(shape=[1], data=deep)]}, match="at depth 0|nested list")


DEEP = b"[" * 1000 + b"1" + b"]" * 1000


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": ' + DEEP + b', "data": [1]}]}',
         "'shape' must be a list"),
        (b'{"inputs": [{"name": "x", "datatype": ' + DEEP + b', "shape": [1], "data": [1]}]}',
         "is not one of"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ' + DEEP + b"}]}",
         "nested 'data' does not match|cannot hold a nested list"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [' + DEEP + b"]}]}",
         "nested 'data' does not match|cannot hold a nested list"),
        (b"[" * 100_000, "malformed"),
    ],
    ids=["shape", "datatype", "data", "element", "100k-brackets"],
)  # fmt: skip
def test_json_nested_a_thousand_deep_is_refused_not_a_crash(body: bytes, match: str) -> None:
    # repr() of such a value exhausted the stack: a RecursionError, answered 500.
    with pytest.raises(ProtocolError, match=match) as refused:
        parse_infer_request(body)
    assert len(str(refused.value)) < 300


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [{"name": "\xff", "datatype": "FP32", "shape": [1], "data": [1]}]}',
        b'{"inputs": [{"name": "\xed\xa0\x80", "datatype": "FP32", "shape": [1], "data": [1]}]}',
        b"",
        b"{",
        b"NaN",
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [NaN]}]}',
    ],
    ids=["bad-utf8", "surrogate", "empty", "truncated", "nan", "nan-element"],
)
def test_malformed_json_is_refused(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed"):
        parse_infer_request(body)


def test_invalid_utf8_in_the_json_part_of_a_binary_request_is_refused() -> None:
    header = b'{"inputs": [{"name": "\xc3\x28", "datatype": "UINT8", "shape": [1], '
    header += b'"parameters": {"binary_data_size": 1}}]}'

    with pytest.raises(ProtocolError, match="malformed"):
        parse_infer_request(header + b"\x01", len(header))


@pytest.mark.parametrize("document", [[], "inputs", 1, None, True])
def test_json_that_is_not_an_object_is_refused(document: Any) -> None:
    _refused(document, match="must be a JSON object")


@pytest.mark.parametrize(
    ("document", "match"),
    [
        ({}, "'inputs' must be a non-empty list"),
        ({"inputs": []}, "'inputs' must be a non-empty list"),
        ({"inputs": {"x": 1}}, "'inputs' must be a non-empty list"),
        ({"inputs": [1]}, "inputs\\[0\\] must be an object"),
        ({"inputs": [_input(), {"datatype": "FP32"}]}, "inputs\\[1\\]: 'name'"),
        ({"inputs": [_input(name=7)]}, "'name' must be a non-empty string"),
        ({"inputs": [_input(name="")]}, "'name' must be a non-empty string"),
        ({"inputs": [_input(datatype=None)]}, "input 'x': datatype None is not one of"),
        ({"inputs": [_input(datatype="BF16")]}, "datatype 'BF16' is not one of"),
        ({"inputs": [_input(datatype="fp32")]}, "datatype 'fp32' is not one of"),
        ({"inputs": [_input(shape=None)]}, "input 'x': 'shape' must be"),
        ({"inputs": [_input(data="1.0,2.0")]}, "input 'x': 'data' must be a list"),
        ({"inputs": [_input(data={"a": 1})]}, "input 'x': 'data' must be a list"),
        ({"inputs": [_input(), _input()]}, "input 'x' appears more than once"),
        ({"inputs": [_input(parameters=[1])]}, "input 'x': 'parameters' must be an object"),
        ({"inputs": [_input()], "id": 5}, "'id' must be a string"),
        ({"inputs": [_input()], "parameters": "x"}, "request: 'parameters' must be an object"),
        (
            {"inputs": [_input()], "parameters": {"binary_data_output": 1}},
            "'binary_data_output' must be true or false",
        ),
        ({"inputs": [_input()], "outputs": {"y": 1}}, "'outputs' must be a list"),
        ({"inputs": [_input()], "outputs": ["y"]}, "outputs\\[0\\] must be an object"),
        ({"inputs": [_input()], "outputs": [{"name": None}]}, "outputs\\[0\\]: 'name'"),
        (
            {"inputs": [_input()], "outputs": [{"name": "y"}, {"name": "y"}]},
            "output 'y' is requested more than once",
        ),
        (
            {"inputs": [_input()], "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]},
            "output 'y' parameter 'binary_data' must be true or false",
        ),
        (
            {"inputs": [_input(data=None, parameters={"shared_memory_region": "r"})]},
            "shared-memory inputs are not supported",
        ),
    ],
)
def test_missing_or_mistyped_fields_are_refused(document: Any, match: str) -> None:
    _refused(document, match=match)


# --- responses read by tritonclient -------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_in_a_response_is_read_exactly_by_tritonclient(
    datatype: str, binary: bool
) -> None:
    expected = SAMPLES[datatype]

    body, json_length = encode_infer_response(
        model_name="m", model_version="3", request_id=None, outputs={"y": expected}, binary=binary
    )

    assert (json_length is not None) == binary
    result = Client.parse_response_body(body, verbose=False, header_length=json_length)
    actual = result.as_numpy("y")
    if datatype == "BYTES" and binary:
        # tritonclient hands binary BYTES back undecoded.
        expected = np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(expected)
    _assert_same(actual, expected)


def test_a_response_mixes_binary_and_json_outputs_in_output_order() -> None:
    outputs = {
        "probabilities": np.array([[0.25, 0.75]], dtype=np.float32),
        "label": np.array([1], dtype=np.int64),
        "names": np.array(["yes"], dtype=object),
    }

    body, json_length = encode_infer_response(
        model_name="m",
        model_version=None,
        request_id="req-9",
        outputs=outputs,
        binary={"probabilities": True, "names": True},
        parameters={"cached": False},
    )

    result = Client.parse_response_body(body, verbose=False, header_length=json_length)
    for name in ("probabilities", "label"):
        _assert_same(result.as_numpy(name), outputs[name])
    assert result.as_numpy("names").tolist() == [b"yes"]
    header = result.get_response()
    assert header["model_name"] == "m"
    assert "model_version" not in header
    assert header["id"] == "req-9"
    assert header["parameters"] == {"cached": False}
    assert [o["name"] for o in header["outputs"]] == ["probabilities", "label", "names"]
    assert json_length == len(orjson.dumps(header))


def test_a_json_only_response_is_plain_json_with_flat_data() -> None:
    body, json_length = encode_infer_response(
        model_name="m",
        model_version="1",
        request_id=None,
        outputs={"y": np.array([[1.5, 2.5]], dtype=np.float32), "n": np.array([3], np.int64)},
    )

    assert json_length is None
    assert orjson.loads(body) == {
        "model_name": "m",
        "model_version": "1",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.5]},
            {"name": "n", "datatype": "INT64", "shape": [1], "data": [3]},
        ],
    }


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4).T,
        np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4)),
        np.arange(12, dtype=np.int64)[::2],
        np.arange(6, dtype=">f8").reshape(2, 3),
        np.array(4.5, dtype=np.float64),
        np.array([["ab", "c"]]),
        np.array([b"ab", "é".encode()], dtype=object),
    ],
    ids=["transposed", "fortran", "strided", "big-endian", "scalar", "unicode-dtype", "bytes"],
)
def test_awkward_arrays_are_encoded_row_major(array: np.ndarray, binary: bool) -> None:
    body, json_length = encode_infer_response(
        model_name="m", model_version=None, request_id=None, outputs={"y": array}, binary=binary
    )

    actual = Client.parse_response_body(body, header_length=json_length).as_numpy("y")
    assert actual.shape == array.shape
    if array.dtype.kind in "OUS":
        texts = [e.decode() if isinstance(e, bytes) else e for e in actual.ravel().tolist()]
        expected = [e.decode() if isinstance(e, bytes) else e for e in array.ravel().tolist()]
        assert texts == expected
    else:
        assert actual.astype(array.dtype.newbyteorder("=")).tolist() == array.tolist()


def test_nan_and_infinity_go_out_as_binary_but_are_refused_in_json() -> None:
    values = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=np.float32)

    body, json_length = encode_infer_response(
        model_name="m", model_version=None, request_id=None, outputs={"y": values}, binary=True
    )
    _assert_same(Client.parse_response_body(body, header_length=json_length).as_numpy("y"), values)

    with pytest.raises(ProtocolError, match="output 'y' holds NaN or infinity"):
        encode_infer_response(
            model_name="m", model_version=None, request_id=None, outputs={"y": values}
        )


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.array([1 + 2j]), "complex128 has no Open Inference Protocol datatype"),
        (np.array([b"\xff"], dtype=object), "not UTF-8; request it as binary"),
        (np.array([3], dtype=object), "a BYTES element is int"),
    ],
)
def test_outputs_that_cannot_be_encoded_are_protocol_errors(array: np.ndarray, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        encode_infer_response(
            model_name="m", model_version=None, request_id=None, outputs={"y": array}
        )


def test_invalid_utf8_bytes_elements_still_go_out_as_binary() -> None:
    array = np.array([b"\xff\x00"], dtype=object)

    body, json_length = encode_infer_response(
        model_name="m", model_version=None, request_id=None, outputs={"y": array}, binary=True
    )

    result = Client.parse_response_body(body, header_length=json_length).as_numpy("y")
    assert result.tolist() == [b"\xff\x00"]


def test_error_body_is_the_protocols_error_object() -> None:
    assert orjson.loads(error_body("input 'x': bad")) == {"error": "input 'x': bad"}
    assert orjson.loads(error_body("lone \ud800")) == {"error": "lone \\ud800"}
