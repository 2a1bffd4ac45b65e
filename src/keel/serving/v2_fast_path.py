"""An accept-only decoder of v2 inference requests that fit one model version's inputs exactly.

For a small tabular model the protocol's general parser and the tensor contract
after it cost several times the model call: every key, shape, element type and
bound is checked by code that knows nothing of the model. What a version
accepts is fixed when it loads (input names, datatypes, fixed dimensions, the
columns' rules), so this path compares a request against that in one pass and
builds the same read-only arrays. The columns' rules are the signature's
(``keel.signature.tensors``): bounds, NaN, whole numbers, one level per one-hot
row, checked in bulk. It never refuses anything: a request it cannot vouch for
(another key order, nested data, a shared-memory or unknown parameter, a value
the bulk check does not pass, anything malformed) goes to
``parse_infer_request`` and ``TensorContract.check``, which name every problem.
A property test holds the two paths to identical results.

A client of the binary extension sends the same JSON header with every request
of one shape (Triton's client library does unless it is given a request id),
and only the tensor bytes after it change. So a header without an ``id`` is
remembered with what it decoded to, and the next request that starts with the
same bytes reads its tensors straight from the offsets found then; their values
are checked against the columns' rules every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from keel.errors import ProtocolError
from keel.serving.protocols import V2_DATATYPES, InferInput, InferRequest, datatype_of
from keel.serving.protocols.v2 import (
    FLOAT_LIMITS,
    JSON_ELEMENT_TYPES,
    REQUEST_KEYS,
    RequestedOutput,
    requested_outputs,
)
from keel.serving.tensor_contract import TensorContract
from keel.signature.fast_records import PYTHON_ROWS, Bounds, bound_groups, rows_within
from keel.signature.tensors import NumericRules

# A request with any other key goes to the general parser, which refuses it.
_JSON_INPUT_KEYS = frozenset({"name", "datatype", "shape", "data"})
_BINARY_INPUT_KEYS = frozenset({"name", "datatype", "shape", "parameters"})
_INTEGER = frozenset({int})
# Binary headers remembered per version; past the limit the memory starts again.
# A header longer than the limit is parsed each time (hashing it costs little,
# but a client whose headers are that long is not sending one row).
_PLAN_LIMIT = 64
_PLAN_HEADER_BYTES = 4096


@dataclass(frozen=True, slots=True)
class _Input:
    """What one input tensor must be, precomputed from the version's contract."""

    name: str
    datatype: str
    dtype: np.dtype[Any]
    # Little-endian twin of ``dtype``, for binary tensor data.
    wire_dtype: np.dtype[Any]
    ndim: int
    # (position, size) of every dimension the model fixes.
    fixed: tuple[tuple[int, int], ...]
    json_types: frozenset[type]
    # Magnitude from which a JSON number rounds to infinity (FP16, FP32): numpy would
    # warn on the cast, so such values are left to the full path before it.
    float_limit: float | None
    rules: NumericRules
    # The rules' bounds for checking a few rows of JSON numbers in Python, exact for
    # the datatypes whose cast cannot carry a value across a bound (not FP16).
    groups: tuple[Bounds, ...] | None


@dataclass(frozen=True, slots=True)
class _BinaryTensor:
    """Where one input's binary data lies in a request, as its header says."""

    expected: _Input
    shape: tuple[int, ...]
    count: int
    offset: int
    parameters: dict[str, Any]
    # Whether the bounds are checked in Python (a few rows) or with numpy.
    in_python: bool

    def read(self, body: bytes) -> InferInput | None:
        """The input from ``body``'s bytes, or None when a value breaks the contract."""
        expected = self.expected
        array = np.frombuffer(body, dtype=expected.wire_dtype, count=self.count, offset=self.offset)
        if expected.dtype.kind == "b" and array.view(np.uint8).max() > 1:
            return None
        if not array.dtype.isnative:
            array = array.astype(expected.dtype)
        # tolist() gives exactly the array's values, so Python judges what the model sees.
        if self.in_python:
            if not _rows_within(expected, array.tolist(), self.shape[0]):
                return None
            array = array.reshape(self.shape)
        else:
            array = array.reshape(self.shape)
            if not expected.rules.holds(array):
                return None
        array.flags.writeable = False
        return InferInput(expected.name, expected.datatype, self.shape, array, self.parameters)


@dataclass(frozen=True, slots=True)
class _BinaryPlan:
    """What one binary request header decodes to; only the tensors' bytes are read anew."""

    request_id: str | None
    outputs: tuple[RequestedOutput, ...] | None
    parameters: dict[str, Any]
    tensors: tuple[_BinaryTensor, ...]
    body_length: int

    def decode(self, body: bytes) -> InferRequest | None:
        if len(body) != self.body_length:
            return None
        decoded = []
        for tensor in self.tensors:
            read = tensor.read(body)
            if read is None:
                return None
            decoded.append(read)
        return InferRequest(self.request_id, tuple(decoded), self.outputs, self.parameters)


@dataclass(frozen=True, slots=True)
class V2FastPath:
    """Decodes the requests one version accepts as they are, or says it cannot vouch for them."""

    inputs: tuple[_Input, ...]
    # Binary headers seen before, by their bytes; only ever touched on the event loop.
    plans: dict[bytes, _BinaryPlan] = field(default_factory=dict)

    def accepts(self, inputs: tuple[InferInput, ...]) -> bool:
        """Whether inputs another decoder made (gRPC's) pass the contract as they are.

        False is not a verdict: ``TensorContract.check`` then judges and names the problems.
        """
        if len(inputs) != len(self.inputs):
            return False
        rows = {tensor.shape[0] for tensor in inputs if tensor.shape}
        return len(rows) == 1 and all(
            _accepts(expected, tensor) for expected, tensor in zip(self.inputs, inputs, strict=True)
        )

    def decode(self, body: bytes, json_length: int | None) -> InferRequest | None:
        """The request, with inputs that pass the contract; None when the full path must judge."""
        end = len(body) if json_length is None else json_length
        if not 0 < end <= len(body):
            return None
        header = None
        if end < len(body) and end <= _PLAN_HEADER_BYTES:
            header = body[:end]
            plan = self.plans.get(header)
            if plan is not None:
                return plan.decode(body)
        try:
            document = orjson.loads(body if end == len(body) else memoryview(body)[:end])
        except orjson.JSONDecodeError:
            return None
        if type(document) is not dict or not REQUEST_KEYS.issuperset(document):
            return None
        request_id = document.get("id")
        raw_inputs = document.get("inputs")
        parameters = document.get("parameters")
        if (
            (request_id is not None and type(request_id) is not str)
            or type(raw_inputs) is not list
            or len(raw_inputs) != len(self.inputs)
        ):
            return None
        if parameters is None:
            parameters = {}
        elif (
            type(parameters) is not dict
            or type(parameters.get("binary_data_output", False)) is not bool
        ):
            return None
        raw_outputs = document.get("outputs")
        try:
            outputs = None if raw_outputs is None else requested_outputs(raw_outputs)
        except ProtocolError:
            return None
        decoded: list[InferInput] = []
        layouts: list[_BinaryTensor] = []
        offset = end
        for expected, raw in zip(self.inputs, raw_inputs, strict=True):
            if type(raw) is not dict:
                return None
            tensor = _decode_input(expected, raw, body, offset)
            if tensor is None:
                return None
            if isinstance(tensor, _BinaryTensor):
                layouts.append(tensor)
                offset += tensor.count * expected.dtype.itemsize
                tensor = tensor.read(body)
                if tensor is None:
                    return None
            decoded.append(tensor)
        if offset != len(body) or len({len(t.data) for t in decoded}) != 1:
            return None
        if header is not None and request_id is None and len(layouts) == len(decoded):
            if len(self.plans) >= _PLAN_LIMIT:
                self.plans.clear()
            self.plans[header] = _BinaryPlan(None, outputs, parameters, tuple(layouts), len(body))
        return InferRequest(request_id, tuple(decoded), outputs, parameters)


def _accepts(expected: _Input, tensor: InferInput) -> bool:
    """Whether an input decoded elsewhere is exactly what ``expected`` takes, values and all."""
    shape = tensor.shape
    if (
        tensor.name != expected.name
        or tensor.datatype != expected.datatype
        or len(shape) != expected.ndim
        or any(shape[position] != size for position, size in expected.fixed)
        or min(shape) <= 0
    ):
        return False
    if expected.groups is not None and shape[0] <= PYTHON_ROWS:
        # tolist() gives exactly the array's values, so Python judges what the model sees.
        return _rows_within(expected, tensor.data.ravel().tolist(), shape[0])
    return bool(expected.rules.holds(tensor.data))


def _decode_input(
    expected: _Input, raw: dict[str, Any], body: bytes, offset: int
) -> InferInput | _BinaryTensor | None:
    """A JSON input decoded, where a binary one lies in the body, or None for the full path."""
    if raw.get("name") != expected.name or raw.get("datatype") != expected.datatype:
        return None
    shape = raw.get("shape")
    if (
        type(shape) is not list
        or len(shape) != expected.ndim
        or not _INTEGER.issuperset(map(type, shape))
        or any(shape[position] != size for position, size in expected.fixed)
        or min(shape) <= 0
    ):
        return None
    count = math.prod(shape)
    # A few rows are checked in Python, before any array exists; more, with numpy.
    in_python = expected.groups is not None and shape[0] <= PYTHON_ROWS
    if raw.keys() == _BINARY_INPUT_KEYS:
        parameters = raw["parameters"]
        if type(parameters) is not dict or parameters.keys() != {"binary_data_size"}:
            return None
        size = parameters["binary_data_size"]
        if type(size) is not int or size != count * expected.dtype.itemsize:
            return None
        if size > len(body) - offset:
            return None
        return _BinaryTensor(expected, tuple(shape), count, offset, parameters, in_python)
    if raw.keys() != _JSON_INPUT_KEYS:
        return None
    values = raw["data"]
    if (
        type(values) is not list
        or len(values) != count
        or not expected.json_types.issuperset(map(type, values))
    ):
        return None
    if in_python:
        if not _rows_within(expected, values, shape[0]):
            return None
    elif expected.float_limit is not None:
        # numpy would warn when a JSON number overflows the datatype in the cast.
        limit = expected.float_limit
        if not -limit < min(values) <= max(values) < limit:
            return None
    try:
        array = np.array(values, dtype=expected.dtype).reshape(shape)
    except OverflowError:  # an integer outside the datatype's range
        return None
    # The bounds are finite: NaN and the infinities fail them.
    if not in_python and not expected.rules.holds(array):
        return None
    array.flags.writeable = False
    return InferInput(expected.name, expected.datatype, tuple(shape), array, {})


def _rows_within(expected: _Input, values: list[Any], rows: int) -> bool:
    """Whether the flat row-major ``values`` obey the version's rules, judged in Python."""
    assert expected.groups is not None
    width = len(values) // rows
    rules = expected.rules
    if width != rules.width:
        return False
    if rows > 1:
        within = rows_within(
            [values[i : i + width] for i in range(0, len(values), width)], expected.groups
        )
    else:
        within = rows_within((values,), expected.groups)
    return within and (not rules.encoded or rules.listed_encoding_holds(values, rows))


def build_fast_path(contract: TensorContract) -> V2FastPath | None:
    """The fast path of a version's contract, built at load; None when an input has no rules."""
    inputs = []
    for name, spec in contract.specs.items():
        rules = contract.rules.get(name)
        if not isinstance(rules, NumericRules) or spec.dtype == "object" or not spec.shape:
            return None
        dtype = spec.numpy_dtype
        datatype = datatype_of(dtype)
        if V2_DATATYPES[datatype] != dtype:
            return None
        groups = _bound_groups(rules, dtype)
        inputs.append(
            _Input(
                name=name,
                datatype=datatype,
                dtype=dtype,
                wire_dtype=dtype.newbyteorder("<"),
                ndim=len(spec.shape),
                fixed=tuple((i, d) for i, d in enumerate(spec.shape) if d is not None),
                json_types=JSON_ELEMENT_TYPES[datatype],
                float_limit=FLOAT_LIMITS.get(datatype),
                groups=groups,
                rules=rules,
            )
        )
    return V2FastPath(tuple(inputs)) if inputs else None


def _bound_groups(rules: NumericRules, dtype: np.dtype[Any]) -> tuple[Bounds, ...] | None:
    """The bounds for checking a few rows in Python, exact against values of ``dtype``."""
    if dtype == np.float32:
        return bound_groups(rules.low_float32.tolist(), rules.high_float32.tolist())
    if dtype == np.float16:
        # A JSON number's cast to FP16 may carry it across a bound: numpy judges those.
        return None
    if dtype.kind == "f":
        return bound_groups(rules.low.tolist(), rules.high.tolist())
    # Integers (and bools) against integer bounds: exact however large.
    return bound_groups(rules.low_int.tolist(), rules.high_int.tolist())
