"""The v2 codec's properties: any bytes parse or fail cleanly, tensors round-trip."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import tritonclient.http as httpclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.utils import np_to_triton_dtype

from keel.errors import ProtocolError
from keel.serving.protocols import (
    V2_DATATYPES,
    InferRequest,
    encode_infer_response,
    parse_infer_request,
)

Client = httpclient.InferenceServerClient

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
datatypes = st.sampled_from([*V2_DATATYPES, "BF16"])


# Each datatype's natural JSON elements; integers reach one past either end of their range.
typed_scalars: dict[str, st.SearchStrategy[Any]] = {
    "BOOL": st.booleans(),
    "BYTES": st.text(max_size=4),
    "FP16": st.floats(-7e4, 7e4) | st.integers(-7e4, 7e4),
    "FP32": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**63),
    "FP64": st.floats(allow_nan=False, allow_infinity=False),
    "BF16": json_scalars,
}
for _name, _dtype in V2_DATATYPES.items():
    if _dtype.kind in "iu":
        _info = np.iinfo(_dtype)
        # orjson writes no integer outside [-2**63, 2**64 - 1].
        low, high = max(int(_info.min) - 1, -(2**63)), min(int(_info.max) + 1, 2**64 - 1)
        typed_scalars[_name] = st.integers(low, high)

element_data = st.lists(json_scalars, max_size=12)
nested_data = st.lists(st.lists(json_scalars, max_size=3), max_size=3)
parameters_sizes = st.integers(min_value=-1, max_value=40) | json_scalars
parameters = st.none() | st.fixed_dictionaries(
    {}, optional={"binary_data_size": parameters_sizes, "binary_data": json_scalars}
)
# A generated request is right but for at most one flaw, so that most examples
# get past the first checks to the deep ones.
FLAWS = [
    "none",
    "name",
    "shape",
    "count",
    "elements",
    "size",
    "data",
    "id",
    "json_length",
    "trailer",
    "parameters",
    "outputs",
]


def _pick(draw: st.DrawFn, flawed: bool, right: Any, wrong: Any) -> Any:
    return draw(wrong if flawed else right)


@st.composite
def tensor_like(draw: st.DrawFn, flaw: str) -> tuple[dict[str, Any], bytes]:
    """An input tensor, right but for ``flaw``, with its binary bytes if it has any."""
    datatype = draw(datatypes)
    dims = st.integers(-1, 2**32) | json_scalars if flaw == "shape" else st.integers(0, 3)
    shape = draw(st.lists(dims, max_size=3))
    # Huge or negative shapes still get small data.
    count = min(max(math.prod(d for d in shape if isinstance(d, int)), 0), 30)
    name = _pick(draw, flaw == "name", st.sampled_from(["a", "b", "c"]), json_scalars)
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    elements = json_scalars if flaw == "elements" else typed_scalars[datatype]
    count += _pick(draw, flaw == "count", st.just(0), st.integers(-1, 1))
    binary = b""
    layout = draw(st.sampled_from(["flat", "nested", "binary"]))
    if layout == "binary":
        itemsize = V2_DATATYPES.get(datatype, np.dtype("u2")).itemsize
        n = max(count, 0)
        if datatype == "BYTES":
            texts = draw(st.lists(st.binary(max_size=3), min_size=n, max_size=n))
            binary = b"".join(len(text).to_bytes(4, "little") + text for text in texts)
        else:
            binary = draw(st.binary(min_size=n * itemsize, max_size=n * itemsize))
        size = _pick(draw, flaw == "size", st.just(len(binary)), parameters_sizes)
        tensor["parameters"] = {"binary_data_size": size}
        if flaw == "data":
            tensor["data"] = draw(element_data)
    elif layout == "nested" and len(shape) >= 2 and flaw != "shape":
        rows, width = shape[0], max(count, 0) // max(shape[0], 1)
        row = st.lists(elements, min_size=width, max_size=width)
        tensor["data"] = draw(st.lists(row, min_size=rows, max_size=rows))
    else:
        tensor["data"] = draw(st.lists(elements, min_size=max(count, 0), max_size=max(count, 0)))
    if flaw == "data" and layout != "binary":
        tensor["data"] = draw(st.none() | element_data | nested_data | json_values)
    return tensor, binary


@st.composite
def request_like(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """A body that looks like an inference request, right but for at most one flaw."""
    flaw = draw(st.sampled_from(FLAWS))
    parts = draw(st.lists(tensor_like(flaw), min_size=1, max_size=3))
    document: dict[str, Any] = {"inputs": [tensor for tensor, _ in parts]}
    if flaw != "name":
        for position, tensor in enumerate(document["inputs"]):
            tensor["name"] = f"input-{position}"
    request_parameters = st.fixed_dictionaries({}, optional={"binary_data_output": st.booleans()})
    outputs = st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["y", "z"])},
            optional={"parameters": st.fixed_dictionaries({"binary_data": st.booleans()})},
        ),
        max_size=3,
    )
    wrong_outputs = st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["y", "z"]) | json_scalars},
            optional={"parameters": parameters},
        ),
        max_size=3,
    )
    document |= draw(
        st.fixed_dictionaries(
            {},
            optional={
                "id": st.just(_pick(draw, flaw == "id", st.text(max_size=4), json_scalars)),
                "parameters": request_parameters if flaw != "parameters" else json_values,
                "outputs": outputs if flaw != "outputs" else wrong_outputs | json_values,
            },
        )
    )
    header = orjson.dumps(document)
    binary = b"".join(chunk for _, chunk in parts)
    binary += _pick(draw, flaw == "trailer", st.just(b""), st.binary(min_size=1, max_size=4))
    honest = st.just(len(header) if binary else None)
    lying = st.integers(min_value=-2, max_value=len(header) + 50)
    return header + binary, _pick(draw, flaw == "json_length", honest, lying)


def _parses_or_refuses(body: bytes, json_length: int | None) -> None:
    try:
        request = parse_infer_request(body, json_length)
    except ProtocolError:
        return
    assert isinstance(request, InferRequest)
    for tensor in request.inputs:
        assert tensor.data.shape == tensor.shape
        assert tensor.data.dtype == V2_DATATYPES[tensor.datatype]


@given(body=st.binary(max_size=200), json_length=st.none() | st.integers(-5, 250))
def test_arbitrary_bytes_parse_or_raise_protocol_error(
    body: bytes, json_length: int | None
) -> None:
    _parses_or_refuses(body, json_length)


@given(value=json_values)
def test_arbitrary_json_parses_or_raises_protocol_error(value: Any) -> None:
    _parses_or_refuses(orjson.dumps(value), None)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(case=request_like())
def test_request_shaped_bodies_parse_or_raise_protocol_error(
    case: tuple[bytes, int | None],
) -> None:
    _parses_or_refuses(*case)


def _elements(datatype: str, finite: bool) -> st.SearchStrategy[Any]:
    dtype = V2_DATATYPES[datatype]
    if datatype == "BYTES":
        return st.text(max_size=6)
    if dtype.kind == "f" and finite:
        return hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False)
    return hnp.from_dtype(dtype)


@st.composite
def tensors(draw: st.DrawFn, finite: bool) -> np.ndarray:
    """An array of any protocol datatype; JSON cannot carry NaN or infinity, so ``finite`` asks."""
    datatype = draw(st.sampled_from(list(V2_DATATYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    return draw(
        hnp.arrays(V2_DATATYPES[datatype], shape, elements=_elements(datatype, finite=finite))
    )


def _same(actual: np.ndarray, expected: np.ndarray) -> bool:
    if expected.dtype == np.object_:
        return actual.shape == expected.shape and actual.tolist() == expected.tolist()
    return (
        actual.dtype == expected.dtype
        and actual.shape == expected.shape
        and actual.tobytes() == expected.tobytes()
    )


@settings(deadline=None)
@given(data=st.data(), binary=st.booleans())
def test_any_tensor_from_tritonclient_is_recovered_exactly(
    data: st.DataObject, binary: bool
) -> None:
    array = data.draw(tensors(finite=not binary))
    tensor = httpclient.InferInput("x", list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array, binary_data=binary)
    body, json_length = Client.generate_request_body([tensor])

    (decoded,) = parse_infer_request(body, json_length).inputs

    assert _same(decoded.data, array)


@settings(deadline=None)
@given(data=st.data(), binary=st.booleans())
def test_any_tensor_in_a_response_is_read_exactly_by_tritonclient(
    data: st.DataObject, binary: bool
) -> None:
    array = data.draw(tensors(finite=not binary))

    body, json_length = encode_infer_response(
        model_name="m", model_version=None, request_id=None, outputs={"y": array}, binary=binary
    )

    actual = Client.parse_response_body(body, header_length=json_length).as_numpy("y")
    if array.dtype == np.object_ and binary:
        actual = np.vectorize(bytes.decode, otypes=[object])(actual) if actual.size else actual
    assert _same(actual.reshape(array.shape), array)
