"""The v2 fast path accepts only what the full parser and the contract accept, and alike."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keel.errors import KeelError
from keel.runtimes import TensorSpec
from keel.serving.protocols import InferRequest, datatype_of, parse_infer_request
from keel.serving.tensor_contract import TensorContract, build_contract
from keel.serving.v2_fast_path import V2FastPath, build_fast_path
from keel.signature import Feature, ModelInput, Output, Signature
from serving.bounded_signatures import FLOAT_SIGNATURE, INTEGER_SIGNATURE

SIGNATURE = FLOAT_SIGNATURE
COLUMNS = len(SIGNATURE.features)
INPUT = SIGNATURE.inputs[0].name
DTYPES = ["float32", "float64", "float16", "int64", "int8", "uint8", "bool"]


def contract_for(dtype: str) -> TensorContract:
    signature = SIGNATURE if np.dtype(dtype).kind == "f" else INTEGER_SIGNATURE
    return build_contract(signature, (TensorSpec(INPUT, dtype, (None, COLUMNS)),))


def fast_path_for(dtype: str) -> V2FastPath:
    fast = build_fast_path(contract_for(dtype))
    assert fast is not None
    return fast


def full_path(
    contract: TensorContract, body: bytes, json_length: int | None
) -> InferRequest | KeelError:
    try:
        request = parse_infer_request(body, json_length)
        contract.check({tensor.name: tensor.data for tensor in request.inputs})
    except KeelError as refused:
        return refused
    return request


def assert_same(fast: InferRequest, full: InferRequest) -> None:
    assert (fast.id, fast.parameters, fast.outputs) == (full.id, full.parameters, full.outputs)
    assert len(fast.inputs) == len(full.inputs)
    for ours, theirs in zip(fast.inputs, full.inputs, strict=True):
        assert (ours.name, ours.datatype, ours.shape, ours.parameters) == (
            theirs.name,
            theirs.datatype,
            theirs.shape,
            theirs.parameters,
        )
        assert ours.data.dtype == theirs.data.dtype
        assert ours.data.shape == theirs.data.shape
        assert ours.data.tobytes() == theirs.data.tobytes()
        assert not ours.data.flags.writeable


EDGES: list[Any] = [
    0.1, 0.3, 0.0999999, 0.3000001, 0.2, -1.0, 0.0, -0.0, 1.0, 5, 0, -1, 127, 255, 300,
    65504.0, 65519.0, 65520.0, 1e38, 3.4028235e38, 3.4028236e38, 1e39, 2**63 - 1, -(2**63),
]  # fmt: skip
numbers = st.one_of(
    st.sampled_from(EDGES),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
elements = st.one_of(numbers, st.booleans(), st.just("1.0"), st.none())
binary_values = st.one_of(st.sampled_from(EDGES), st.floats(allow_nan=True, allow_infinity=True))


def valid_values(dtype: str) -> st.SearchStrategy[Any]:
    """Numbers every column of ``contract_for(dtype)`` accepts, as a client sends them."""
    kind = np.dtype(dtype).kind
    if kind == "b":
        return st.booleans()
    if kind in "iu":
        return st.integers(0, 1)
    return st.one_of(st.floats(0.1, 0.3), st.sampled_from([0.1, 0.3, 0.2]))


def pick(draw: st.DrawFn, hostile: bool, valid: list[Any], invalid: list[Any]) -> Any:
    return draw(st.sampled_from(valid + invalid if hostile else valid))


@st.composite
def documents(draw: st.DrawFn, dtype: str) -> tuple[bytes, int | None]:
    """A request for the contract's input: valid, or wrong in ways clients get things wrong."""
    hostile = draw(st.booleans())
    rows = draw(st.integers(min_value=1, max_value=7))
    datatype = datatype_of(np.dtype(dtype))
    shape = [rows, COLUMNS]
    tensor: dict[str, Any] = {
        "name": pick(draw, hostile, [INPUT], ["other"]),
        "datatype": pick(draw, hostile, [datatype], ["FP64", "INT32"]),
        "shape": pick(draw, hostile, [shape], [[rows, COLUMNS + 1], [0, COLUMNS],
                                               [rows, float(COLUMNS)], [rows * COLUMNS]]),
    }  # fmt: skip
    document: dict[str, Any] = {"inputs": [tensor]}
    for key, valid, invalid in (
        ("id", [None, "req-1"], [7]),
        ("parameters", [None, {}, {"binary_data_output": True}, {"computed_at": 1.0}],
         [{"binary_data_output": "x"}, []]),
        ("outputs", [None, [], [{"name": "score"}],
                     [{"name": "score", "parameters": {"binary_data": True}}]],
         [[{"name": "score"}, {"name": "score"}], [{"name": ""}],
          [{"name": "score", "parameters": {"binary_data": 1}}],
          [{"name": "score", "parameters": []}], "score"]),
        ("extension", [None], [{"anything": 1}]),
    ):  # fmt: skip
        value = pick(draw, hostile, valid, invalid)
        if value is not None:
            document[key] = value
    count = rows * COLUMNS
    values = valid_values(dtype)
    if hostile:
        values = st.one_of(values, numbers) if dtype != "bool" else st.one_of(values, elements)
    if draw(st.booleans()):
        data: list[Any] = draw(st.lists(values, min_size=count, max_size=count))
        if hostile and draw(st.booleans()):
            data[draw(st.integers(0, count - 1))] = draw(elements)
        if hostile and draw(st.integers(0, 4)) == 0:
            data = data[:-1]
        tensor["data"] = data
        return orjson.dumps(document), None
    with np.errstate(over="ignore", invalid="ignore"):  # as a client's cast would
        if dtype == "bool":
            top = 2 if hostile else 1
            raw = bytes(draw(st.lists(st.integers(0, top), min_size=count, max_size=count)))
        else:
            if hostile:
                values = st.one_of(values, binary_values)
            drawn = draw(st.lists(values, min_size=count, max_size=count))
            raw = np.array(drawn, dtype=np.float64).astype(np.dtype(dtype).newbyteorder("<"))
            raw = raw.tobytes()
    size = pick(draw, hostile, [len(raw)], [len(raw) - 1])
    tensor["parameters"] = {"binary_data_size": size}
    header = orjson.dumps(document)
    return header + raw + pick(draw, hostile, [b""], [b"x"]), len(header)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_path_accepts_only_what_the_full_path_accepts(dtype: str, data: Any) -> None:
    body, json_length = data.draw(documents(dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy must not be left to warn on the request path
        fast = fast_path_for(dtype).decode(body, json_length)
    event("fast path" if fast is not None else "full path")
    if fast is None:
        return
    full = full_path(contract_for(dtype), body, json_length)
    assert isinstance(full, InferRequest), (body, full)
    assert_same(fast, full)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_inputs_decoded_elsewhere_are_accepted_only_when_the_contract_accepts_them(
    dtype: str, data: Any
) -> None:
    """``accepts`` (the gRPC edge's check of tensors it decoded itself) never lets through
    what the contract refuses, and passes what the REST fast path passes."""
    body, json_length = data.draw(documents(dtype))
    try:
        parsed = parse_infer_request(body, json_length)
    except KeelError:
        return
    fast = fast_path_for(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        accepted = fast.accepts(parsed.inputs)
    event("accepted" if accepted else "left to the contract")
    if accepted:
        contract_for(dtype).check({tensor.name: tensor.data for tensor in parsed.inputs})
    if fast.decode(body, json_length) is not None:
        assert accepted


def triton_body(rows: np.ndarray, binary: bool) -> tuple[bytes, int | None]:
    tensor = triton.InferInput(INPUT, list(rows.shape), datatype_of(rows.dtype))
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [triton.InferRequestedOutput("score", binary_data=binary)]
    body, json_length = triton.InferenceServerClient.generate_request_body(
        [tensor], outputs=outputs, request_id="r-1"
    )
    return bytes(body), json_length


@pytest.mark.parametrize("rows", [1, 3, 64])
@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_what_a_protocol_client_sends_takes_the_fast_path(
    dtype: str, binary: bool, rows: int
) -> None:
    values = np.array([[0.2, -3.5, 12.0, 10.0, 0.5]] * rows, dtype=dtype)
    body, json_length = triton_body(values, binary)
    fast = fast_path_for(dtype).decode(body, json_length)
    assert fast is not None
    full = full_path(contract_for(dtype), body, json_length)
    assert isinstance(full, InferRequest)
    assert_same(fast, full)
    # A NaN (allowed for 'ratio') or an indicator value (-1 for 'income') is left to
    # the full path, which accepts them.
    values[0, 4] = np.nan
    values[-1, 3] = -1.0
    body, json_length = triton_body(values, binary=True)
    assert fast_path_for(dtype).decode(body, json_length) is None
    assert isinstance(full_path(contract_for(dtype), body, json_length), InferRequest)


def test_string_inputs_have_no_fast_path() -> None:
    signature = Signature(
        features=[Feature(name="city", dtype="string")],
        inputs=[ModelInput(name="text", dtype="string", features=["city"])],
        outputs=[Output(name="score", dtype="float32", shape=[None, 1], kind="score")],
    )
    specs = tuple(TensorSpec(t.name, "object", (None, 1)) for t in signature.inputs)
    assert build_fast_path(build_contract(signature, specs)) is None


@st.composite
def tensor_bytes(draw: st.DrawFn, dtype: str, size: int) -> bytes:
    """New tensor data for a remembered header: values the contract takes, or any bytes."""
    if draw(st.booleans()):
        return draw(st.binary(min_size=size, max_size=size))
    count = size // np.dtype(dtype).itemsize
    drawn = draw(st.lists(valid_values(dtype), min_size=count, max_size=count))
    return np.array(drawn, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_remembered_binary_header_reads_new_bytes_as_the_full_path_does(
    dtype: str, data: Any
) -> None:
    fast = fast_path_for(dtype)
    body, json_length = data.draw(documents(dtype))
    if json_length is None or fast.decode(body, json_length) is None:
        return
    header, size = body[:json_length], len(body) - json_length
    remembered = header in fast.plans
    event("remembered" if remembered else "not remembered")
    for _ in range(3):
        again = (
            header + data.draw(tensor_bytes(dtype, size)) + data.draw(st.sampled_from([b"", b"x"]))
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            decoded = fast.decode(again, json_length)
        full = full_path(contract_for(dtype), again, json_length)
        if decoded is None:
            continue
        event("new bytes taken")
        assert isinstance(full, InferRequest), (again, full)
        assert_same(decoded, full)


def test_binary_headers_are_remembered_only_without_a_request_id() -> None:
    fast = fast_path_for("float32")
    values = np.array([[0.2, -3.5, 12.0, 10.0, 0.5]], dtype="float32")
    tensor = triton.InferInput(INPUT, list(values.shape), "FP32")
    tensor.set_data_from_numpy(values, binary_data=True)
    body, json_length = triton.InferenceServerClient.generate_request_body([tensor])
    first = fast.decode(bytes(body), json_length)
    assert first is not None
    assert list(fast.plans) == [bytes(body)[:json_length]]
    changed = values.copy()
    changed[0, 0] = 0.25
    again = bytes(body)[:json_length] + changed.tobytes()
    second = fast.decode(again, json_length)
    assert second is not None
    assert second.inputs[0].data[0, 0] == np.float32(0.25)
    # A NaN where the contract refuses one is left to the full path, remembered or not.
    changed[0, 0] = np.nan
    assert fast.decode(bytes(body)[:json_length] + changed.tobytes(), json_length) is None
    body_with_id, length_with_id = triton_body(values, binary=True)
    assert fast.decode(body_with_id, length_with_id) is not None
    assert len(fast.plans) == 1
