"""Open Inference Protocol (KServe v2) REST inference messages: bytes to request, arrays to bytes.

Pure functions over bytes, numpy and orjson; the HTTP layer passes the body and
the ``Inference-Header-Content-Length`` header in and sends what comes back.

Where the spec is silent, keel decides:

- A key the protocol does not define (top level, in an input, in a requested
  output) is refused, naming it: ``outputz`` or a misspelt ``parameters`` must
  not pass as a request that asked for nothing. Extensions carry their settings
  in ``parameters``, whose unknown entries are ignored. A known optional key
  whose value is ``null`` counts as absent.
- ``data`` may be flat or nested row-major lists; nested lists must match the
  shape exactly at every depth.
- JSON element types are strict: BOOL takes only true/false, integer types only
  integers within range (no bools, no ``1.0``), FP types numbers (no bools),
  BYTES only strings. A value that overflows FP16/FP32 is refused rather than
  becoming infinity.
- BYTES tensors decode to object arrays of ``str`` (binary elements as
  UTF-8, refused if invalid); outputs may hold ``str`` or ``bytes``.
- A shape may hold at most ``MAX_ELEMENTS`` elements (its non-zero dimensions
  multiplied), checked before anything is allocated.
- Decoded arrays are read-only; binary ones are views into the request body.
- An empty ``outputs`` list means the same as none: return every output.
- Shared-memory inputs are refused: keel does not implement that extension.
- A JSON output holding NaN or infinity is refused (JSON has no spelling for
  them and ``null`` would lose which one); binary outputs carry them as is. A
  served request never gets here with one: the server refuses a non-finite
  output as the model's failure on every API (``keel.serving.batcher``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from keel.errors import ProtocolError
from keel.serving.protocols.datatypes import V2_DATATYPES, datatype_of
from keel.serving.protocols.v2_binary import (
    decode_bytes,
    decode_fixed,
    encode_bytes,
    encode_fixed,
    utf8_of,
)
from keel.signature.rules import shown

# Far above any real request; checked before anything is allocated so that a
# shape like [2**40, 2**40] costs nothing.
MAX_ELEMENTS = 2**31
# The keys the protocol defines: of a request, of an input tensor, of a requested output.
REQUEST_KEYS = frozenset({"id", "inputs", "outputs", "parameters"})
INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
OUTPUT_KEYS = frozenset({"name", "parameters"})
# numpy's own limit on the number of dimensions.
_MAX_DIMS = 64

_INTEGER = frozenset({int})
# The JSON element types each datatype accepts, by numpy kind. bool is not an
# int here, though Python says it is.
_JSON_TYPES_BY_KIND: Mapping[str, frozenset[type]] = {
    "b": frozenset({bool}),
    "i": _INTEGER,
    "u": _INTEGER,
    "f": frozenset({int, float}),
    "O": frozenset({str}),
}
JSON_ELEMENT_TYPES: Mapping[str, frozenset[type]] = {
    name: _JSON_TYPES_BY_KIND[dtype.kind] for name, dtype in V2_DATATYPES.items()
}
# The smallest magnitudes that round to infinity: the largest finite value plus
# half a unit in the last place (a tie rounds to the even infinity).
FLOAT_LIMITS: Mapping[str, float] = {"FP16": 65520.0, "FP32": 2.0**128 - 2.0**103}
# datatype_of for the dtypes outputs usually have, as one dict look-up.
_DATATYPES: Mapping[np.dtype[Any], str] = {
    dtype: name for name, dtype in V2_DATATYPES.items() if name != "BYTES"
}
_JSON_TYPE_NAMES: Mapping[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number with a fraction or exponent",
    str: "a string",
    list: "a nested list",
    dict: "an object",
    type(None): "null",
}


# NamedTuples rather than frozen dataclasses: built for every request, and a frozen
# dataclass's __init__ costs about three times as much.
class RequestedOutput(NamedTuple):
    """An output the client asked for, and whether it wants it as binary data."""

    name: str
    binary_data: bool | None
    parameters: dict[str, Any]


class InferInput(NamedTuple):
    """One input tensor of a request, decoded into a read-only array of its shape."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: npt.NDArray[Any]
    parameters: dict[str, Any]


class InferRequest(NamedTuple):
    """A decoded inference request: its id, input tensors, requested outputs and parameters."""

    id: str | None
    inputs: tuple[InferInput, ...]
    outputs: tuple[RequestedOutput, ...] | None
    parameters: dict[str, Any]

    @property
    def binary_data_output(self) -> bool:
        """Whether the client asked for every output as binary data unless it says otherwise."""
        return self.parameters.get("binary_data_output") is True

    def wants_binary(self, output_name: str) -> bool:
        """Whether the named output goes back as binary data: its own choice, else the default."""
        for output in self.outputs or ():
            if output.name == output_name and output.binary_data is not None:
                return output.binary_data
        return self.binary_data_output


def parse_infer_request(body: bytes, json_length: int | None = None) -> InferRequest:
    """Decode a request; ``json_length`` is its Inference-Header-Content-Length header."""
    header_end = _header_end(body, json_length)
    document = _load_json(body, header_end)
    if not isinstance(document, dict):
        raise ProtocolError("the request must be a JSON object")
    refuse_unknown_keys(document, REQUEST_KEYS, "the request")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("'id' must be a string")
    parameters = _parameters(document.get("parameters"), "request")
    _optional_bool(parameters, "binary_data_output", "request parameter")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("'inputs' must be a non-empty list of input tensors")
    inputs: list[InferInput] = []
    names: set[str] = set()
    offset = header_end
    for position, raw in enumerate(raw_inputs):
        tensor, offset = _parse_input(raw, position, body, offset)
        if tensor.name in names:
            raise ProtocolError(f"input {tensor.name!r} appears more than once")
        names.add(tensor.name)
        inputs.append(tensor)
    if offset != len(body):
        raise ProtocolError(
            f"the body has {len(body) - header_end} bytes after the JSON header but the "
            f"inputs' binary_data_size add up to {offset - header_end}"
        )
    return InferRequest(
        id=request_id,
        inputs=tuple(inputs),
        outputs=requested_outputs(document.get("outputs")),
        parameters=parameters,
    )


def encode_infer_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: Mapping[str, npt.NDArray[Any]],
    binary: Mapping[str, bool] | bool = False,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Encode an inference response: (body, Inference-Header-Content-Length or None if all JSON)."""
    document: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        document["model_version"] = model_version
    if request_id is not None:
        document["id"] = request_id
    if parameters:
        document["parameters"] = dict(parameters)
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    json_floats: list[tuple[str, npt.NDArray[Any]]] = []
    for name, value in outputs.items():
        array = np.asarray(value)
        datatype = _DATATYPES.get(array.dtype) or datatype_of(array.dtype)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        as_binary = binary if isinstance(binary, bool) else binary.get(name, False)
        if as_binary:
            if datatype == "BYTES":
                raw = encode_bytes(array, f"output {name!r}")
            else:
                raw = encode_fixed(array)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = _json_data(array, datatype, name)
            if array.dtype.kind == "f":
                json_floats.append((name, array))
        tensors.append(tensor)
    document["outputs"] = tensors
    try:
        header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as error:
        raise ProtocolError(f"the response cannot be written as JSON: {error}") from error
    # orjson writes NaN and the infinities as null, so a header without it holds none;
    # one with it (or with a name that spells it) is looked at element by element.
    if json_floats and b"null" in header:
        for name, array in json_floats:
            if not np.isfinite(array).all():
                raise ProtocolError(
                    f"output {name!r} holds NaN or infinity, which JSON cannot carry; "
                    "request it as binary data"
                )
    if not chunks:
        return header, None
    return b"".join((header, *chunks)), len(header)


def error_body(message: str) -> bytes:
    """The protocol's error response body, ``{"error": message}``."""
    try:
        return orjson.dumps({"error": message})
    except TypeError:
        # A lone surrogate cannot be UTF-8; an error must still be reported.
        readable = message.encode("utf-8", "backslashreplace").decode("utf-8")
        return orjson.dumps({"error": readable})


def _header_end(body: bytes, json_length: int | None) -> int:
    if json_length is None:
        return len(body)
    if type(json_length) is not int or not 0 < json_length <= len(body):
        raise ProtocolError(
            f"Inference-Header-Content-Length is {json_length!r} but must be between 1 and "
            f"the body's {len(body)} bytes"
        )
    return json_length


def _load_json(body: bytes, end: int) -> Any:
    try:
        return orjson.loads(memoryview(body)[:end] if end < len(body) else body)
    except orjson.JSONDecodeError as error:
        raise ProtocolError(f"the request's JSON is malformed: {error}") from error


def _parameters(raw: object, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where}: 'parameters' must be an object")
    return raw


def _optional_bool(parameters: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and type(value) is not bool:
        raise ProtocolError(f"{where} {key!r} must be true or false")
    return value


def refuse_unknown_keys(raw: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    """Raise ProtocolError naming each key of ``raw`` the protocol does not define there."""
    unknown = sorted(key for key in raw if key not in known)
    if not unknown:
        return
    guesses = [
        f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)
        for key in unknown
        for close in [difflib.get_close_matches(key, known, n=1)]
    ]
    raise ProtocolError(
        f"{where}: unknown key {', '.join(guesses)}; known: {', '.join(map(repr, sorted(known)))} "
        "(an extension's settings go in 'parameters')"
    )


def _name(raw: Mapping[str, Any], where: str) -> str:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{where}: 'name' must be a non-empty string")
    return name


def _parse_input(raw: object, position: int, body: bytes, offset: int) -> tuple[InferInput, int]:
    """Decode ``inputs[position]``, whose binary data would start at ``offset``; return the next."""
    if not isinstance(raw, dict):
        raise ProtocolError(f"inputs[{position}] must be an object")
    name = _name(raw, f"inputs[{position}]")
    where = f"input {name!r}"
    refuse_unknown_keys(raw, INPUT_KEYS, where)
    datatype = raw.get("datatype")
    if not isinstance(datatype, str) or datatype not in V2_DATATYPES:
        raise ProtocolError(
            f"{where}: datatype {shown(datatype)} is not one of {', '.join(V2_DATATYPES)}"
        )
    shape, count = checked_shape(raw.get("shape"), where)
    parameters = _parameters(raw.get("parameters"), where)
    if "shared_memory_region" in parameters:
        raise ProtocolError(f"{where}: shared-memory inputs are not supported")
    size = parameters.get("binary_data_size")
    if size is None:
        if raw.get("data") is None:
            raise ProtocolError(f"{where}: has neither 'data' nor a binary_data_size parameter")
        flat = _decode_json(raw["data"], datatype, shape, count, where)
    else:
        if type(size) is not int or size < 0:
            raise ProtocolError(f"{where}: binary_data_size must be a non-negative integer")
        if raw.get("data") is not None:
            raise ProtocolError(f"{where}: has both 'data' and a binary_data_size parameter")
        if size > len(body) - offset:
            raise ProtocolError(
                f"{where}: binary_data_size is {size} bytes but only {len(body) - offset} "
                "remain in the body"
            )
        if datatype == "BYTES":
            flat = decode_bytes(body, offset, size, count, where)
        else:
            flat = decode_fixed(body, offset, size, V2_DATATYPES[datatype], count, where)
        offset += size
    data = flat.reshape(shape)
    data.flags.writeable = False
    return InferInput(name, datatype, shape, data, parameters), offset


def checked_shape(raw: object, where: str) -> tuple[tuple[int, ...], int]:
    """The shape and its element count, refused if absurd before anything is allocated."""
    if (
        not isinstance(raw, list)
        or len(raw) > _MAX_DIMS
        or not set(map(type, raw)) <= _INTEGER
        or min(raw, default=0) < 0
    ):
        raise ProtocolError(
            f"{where}: 'shape' must be a list of at most {_MAX_DIMS} non-negative integers, "
            f"got {shown(raw)}"
        )
    count = math.prod(raw)
    # numpy refuses a zero-size array whose other dimensions multiply past its
    # limits, so the cap applies to the non-zero dimensions.
    extent = count or math.prod(dim for dim in raw if dim)
    if extent > MAX_ELEMENTS:
        raise ProtocolError(f"{where}: shape {raw} has over {MAX_ELEMENTS} elements")
    return tuple(raw), count


def _decode_json(
    data: object, datatype: str, shape: tuple[int, ...], count: int, where: str
) -> npt.NDArray[Any]:
    """A flat array of the JSON ``data`` list, type-checked against the datatype."""
    if not isinstance(data, list):
        raise ProtocolError(f"{where}: 'data' must be a list")
    types = set(map(type, data))
    if list in types:
        data = _flatten(data, shape, where)
        types = set(map(type, data))
    if len(data) != count:
        raise ProtocolError(
            f"{where}: 'data' has {len(data)} elements but shape {list(shape)} needs {count}"
        )
    allowed = JSON_ELEMENT_TYPES[datatype]
    if not types <= allowed:
        bad = next(element for element in data if type(element) not in allowed)
        kind = _JSON_TYPE_NAMES.get(type(bad), type(bad).__name__)
        raise ProtocolError(f"{where}: {datatype} data cannot hold {kind} ({shown(bad)})")
    dtype = V2_DATATYPES[datatype]
    if datatype == "BYTES":
        array = np.empty(count, dtype=np.object_)
        array[:] = data
        return array
    limit = FLOAT_LIMITS.get(datatype)
    # Checked on the list, before the cast: cheaper than numpy's errstate and
    # isfinite, and numpy never gets to warn about the overflow.
    if limit is not None and data and not -limit < min(data) <= max(data) < limit:
        raise ProtocolError(f"{where}: a value is outside the range of {datatype}")
    try:
        return np.array(data, dtype=dtype)
    except OverflowError as error:
        # Only integers get here: float ranges were checked above.
        info = np.iinfo(dtype)
        raise ProtocolError(
            f"{where}: a value is outside the range of {datatype} [{info.min}, {info.max}]"
        ) from error


def _flatten(data: list[Any], shape: tuple[int, ...], where: str) -> list[Any]:
    """The row-major elements of nested lists that must match ``shape`` at every depth."""
    level: list[Any] = [data]
    for depth, dim in enumerate(shape):
        if level and (set(map(type, level)) != {list} or set(map(len, level)) != {dim}):
            raise ProtocolError(
                f"{where}: nested 'data' does not match shape {list(shape)} at depth {depth}"
            )
        level = list(chain.from_iterable(level))
    return level


def requested_outputs(raw: object) -> tuple[RequestedOutput, ...] | None:
    """The ``outputs`` a request names, checked; None when it names none."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ProtocolError("'outputs' must be a list of requested outputs")
    outputs: list[RequestedOutput] = []
    names: set[str] = set()
    for position, entry in enumerate(raw):
        output = _requested_output(entry, names)
        if output is None:
            _refuse_output(position, entry, names)
        else:
            names.add(output.name)
            outputs.append(output)
    return tuple(outputs) or None


def _requested_output(entry: object, names: set[str]) -> RequestedOutput | None:
    """A well-formed requested output, or None; the errors are ``_refuse_output``'s to name."""
    if type(entry) is not dict or not entry.keys() <= OUTPUT_KEYS:
        return None
    name = entry.get("name")
    parameters = entry.get("parameters")
    if type(name) is not str or not name or name in names:
        return None
    if parameters is None:
        return RequestedOutput(name, None, {})
    if type(parameters) is not dict:
        return None
    binary_data = parameters.get("binary_data")
    if binary_data is not None and type(binary_data) is not bool:
        return None
    return RequestedOutput(name, binary_data, parameters)


def _refuse_output(position: int, entry: object, names: set[str]) -> None:
    """Raise the ProtocolError that says what is wrong with ``outputs[position]``."""
    if not isinstance(entry, dict):
        raise ProtocolError(f"outputs[{position}] must be an object")
    name = _name(entry, f"outputs[{position}]")
    if name in names:
        raise ProtocolError(f"output {name!r} is requested more than once")
    where = f"output {name!r}"
    refuse_unknown_keys(entry, OUTPUT_KEYS, where)
    parameters = _parameters(entry.get("parameters"), where)
    _optional_bool(parameters, "binary_data", f"{where} parameter")
    raise AssertionError(f"outputs[{position}] was refused but breaks no rule")


def _json_data(array: npt.NDArray[Any], datatype: str, name: str) -> Any:
    """The flat row-major JSON form of an output; orjson writes numeric arrays natively."""
    if datatype == "BYTES":
        elements = array.ravel().tolist()
        if set(map(type, elements)) <= {str}:
            return elements
        where = f"output {name!r}"
        return [_text_of(element, where) for element in elements]
    # orjson needs native byte order and C order; reshape(-1) then is a view.
    return np.ascontiguousarray(array, dtype=V2_DATATYPES[datatype]).reshape(-1)


def _text_of(element: object, where: str) -> str:
    if isinstance(element, bytes):
        try:
            return element.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ProtocolError(
                f"{where}: a BYTES element is not UTF-8; request it as binary data"
            ) from error
    utf8_of(element, where)  # refuses what is not a str
    return str(element)
