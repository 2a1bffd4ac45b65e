"""Open Inference Protocol gRPC inference: ``ModelInferRequest`` in, ``ModelInferResponse`` out.

A request becomes the same ``InferRequest`` the REST parser makes, so everything
after it (the signature check, freshness, output selection) is one code for both.
The rules are REST's where the protocol lets them be:

- Tensor data comes either in each input's typed ``contents`` or in
  ``raw_input_contents`` (one entry per input, in order, in the binary tensor
  extension's layout), never a mix: a request with both is refused, as Triton does.
- Typed contents go in the field of the input's datatype (``fp32_contents`` for
  FP32, ``int_contents`` for INT8 to INT32, ...); one in another field is refused,
  naming the right one, as is a value outside the datatype's range. FP16 has no
  typed field: it comes raw.
- The element count must match the shape, whose size is capped before anything is
  allocated; BYTES elements must be UTF-8.
- A parameter with no value set is refused. ``computed_at`` (feature freshness)
  is a JSON object in REST; here it is that object as a JSON string.
- Answers always carry their tensors in ``raw_output_contents``, as Triton's do and
  as tritonclient reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from keel.errors import ProtocolError
from keel.serving.protocols.datatypes import V2_DATATYPES, datatype_of
from keel.serving.protocols.grpc_messages import inference
from keel.serving.protocols.v2 import InferInput, InferRequest, RequestedOutput, checked_shape
from keel.serving.protocols.v2_binary import decode_bytes, decode_fixed, encode_bytes, encode_fixed
from keel.signature import COMPUTED_AT_PARAMETER
from keel.signature.rules import shown

# The typed contents field each datatype's elements go in (FP16 has none).
CONTENTS_FIELDS: Mapping[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# The integer datatypes narrower than their contents field, whose range is checked.
_NARROW = frozenset({"UINT8", "UINT16", "INT8", "INT16"})


def infer_request_of(message: Any) -> InferRequest:
    """The ``InferRequest`` a ``ModelInferRequest`` holds, checked as REST checks one."""
    raw_contents = message.raw_input_contents
    if not message.inputs:
        raise ProtocolError("'inputs' must be a non-empty list of input tensors")
    if raw_contents and len(raw_contents) != len(message.inputs):
        raise ProtocolError(
            f"raw_input_contents has {len(raw_contents)} entries but the request has "
            f"{len(message.inputs)} inputs: give one per input, in order, or none"
        )
    inputs: list[InferInput] = []
    names: set[str] = set()
    for position, tensor in enumerate(message.inputs):
        raw = raw_contents[position] if raw_contents else None
        parsed = _input(tensor, position, raw)
        if parsed.name in names:
            raise ProtocolError(f"input {parsed.name!r} appears more than once")
        names.add(parsed.name)
        inputs.append(parsed)
    outputs: list[RequestedOutput] = []
    for position, output in enumerate(message.outputs):
        if not output.name:
            raise ProtocolError(f"outputs[{position}]: 'name' must be a non-empty string")
        if any(chosen.name == output.name for chosen in outputs):
            raise ProtocolError(f"output {output.name!r} is requested more than once")
        parameters = parameters_of(output.parameters, f"output {output.name!r}")
        outputs.append(RequestedOutput(output.name, None, parameters))
    parameters = parameters_of(message.parameters, "request")
    computed_at = parameters.get(COMPUTED_AT_PARAMETER)
    if isinstance(computed_at, str):
        try:
            parameters[COMPUTED_AT_PARAMETER] = orjson.loads(computed_at)
        except orjson.JSONDecodeError:
            raise ProtocolError(
                f"request parameter {COMPUTED_AT_PARAMETER!r} must be a JSON object of "
                f"feature name to the time it was computed, not {shown(computed_at)}"
            ) from None
    return InferRequest(
        id=message.id or None,
        inputs=tuple(inputs),
        outputs=tuple(outputs) or None,
        parameters=parameters,
    )


def parameters_of(entries: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A parameters map as plain values; one with no value set is refused."""
    values: dict[str, Any] = {}
    for key, parameter in entries.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise ProtocolError(f"{where} parameter {key!r} has no value")
        values[key] = getattr(parameter, choice)
    return values


def _input(tensor: Any, position: int, raw: bytes | None) -> InferInput:
    if not tensor.name:
        raise ProtocolError(f"inputs[{position}]: 'name' must be a non-empty string")
    where = f"input {tensor.name!r}"
    datatype = tensor.datatype
    if datatype not in V2_DATATYPES:
        raise ProtocolError(
            f"{where}: datatype {shown(datatype)} is not one of {', '.join(V2_DATATYPES)}"
        )
    shape, count = checked_shape(list(tensor.shape), where)
    parameters = parameters_of(tensor.parameters, where)
    if "shared_memory_region" in parameters:
        raise ProtocolError(f"{where}: shared-memory inputs are not supported")
    typed = tensor.HasField("contents")
    if raw is not None:
        if typed and tensor.contents.ListFields():
            raise ProtocolError(
                f"{where}: has typed contents but the request carries raw_input_contents; "
                "send every input one way"
            )
        if datatype == "BYTES":
            flat = decode_bytes(raw, 0, len(raw), count, f"{where}'s raw_input_contents")
        else:
            dtype = V2_DATATYPES[datatype]
            if len(raw) != count * dtype.itemsize:
                raise ProtocolError(
                    f"{where}: raw_input_contents[{position}] has {len(raw)} bytes but its "
                    f"shape's {count} elements of {datatype} take {count * dtype.itemsize}"
                )
            flat = decode_fixed(raw, 0, len(raw), dtype, count, where)
    else:
        flat = _typed(tensor.contents, datatype, count, where)
    data = flat.reshape(shape)
    data.flags.writeable = False
    return InferInput(tensor.name, datatype, shape, data, parameters)


def _typed(contents: Any, datatype: str, count: int, where: str) -> npt.NDArray[Any]:
    """The flat array of an input's typed contents, in the field its datatype names."""
    expected = CONTENTS_FIELDS.get(datatype)
    for field, _ in contents.ListFields():
        if field.name != expected:
            rightful = f"in {expected}" if expected else "in raw_input_contents"
            raise ProtocolError(f"{where}: {datatype} data goes {rightful}, not {field.name}")
    values = getattr(contents, expected) if expected else ()
    if len(values) != count:
        how = f"{expected} has {len(values)}" if expected else "it has no raw_input_contents"
        raise ProtocolError(f"{where}: its shape needs {count} elements but {how}")
    dtype = V2_DATATYPES[datatype]
    if datatype == "BYTES":
        try:
            texts = [element.decode("utf-8") for element in values]
        except UnicodeDecodeError:
            raise ProtocolError(f"{where}: a BYTES element is not valid UTF-8") from None
        array = np.empty(count, dtype=np.object_)
        array[:] = texts
        return array
    if datatype in _NARROW:
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(dtype)
        if wide.size and not info.min <= wide.min() <= wide.max() <= info.max:
            raise ProtocolError(
                f"{where}: a value is outside the range of {datatype} [{info.min}, {info.max}]"
            )
        return wide.astype(dtype)
    return np.array(values, dtype=dtype)


def encode_infer_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Mapping[str, npt.NDArray[Any]],
) -> bytes:
    """A serialised ``ModelInferResponse`` of ``outputs``, their data in raw_output_contents."""
    response = inference.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request_id or ""
    )
    for name, value in outputs.items():
        array = np.asarray(value)
        datatype = datatype_of(array.dtype)
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if datatype == "BYTES":
            response.raw_output_contents.append(encode_bytes(array, f"output {name!r}"))
        else:
            response.raw_output_contents.append(encode_fixed(array))
    serialized: bytes = response.SerializeToString()
    return serialized
