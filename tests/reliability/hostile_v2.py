"""Hypothesis strategies for hostile Open Inference Protocol (v2) request bodies, JSON and binary.

Each strategy starts from a valid request to a served model and breaks one rule of it.
"""

from __future__ import annotations

import copy
import struct
from typing import Any

from hypothesis import strategies as st
from refusals import HostileRequest
from served_models import BINARY_HEADER, ServedModel, json_body

Document = dict[str, Any]

OTHER_DATATYPES = ["FP64", "FP16", "INT64", "INT32", "UINT8", "UINT64", "BOOL", "BYTES"]
# Values of the wrong kind; finite, since JSON has no spelling for NaN or infinity (the
# number strategies send those as the tokens clients write).
JUNK = st.one_of(
    st.text(max_size=6),
    st.booleans(),
    st.none(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.floats(allow_nan=False, allow_infinity=False),
)
# Number spellings JSON does not have, or has only at absurd sizes.
NUMBER_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 400, "0x10", "+1"]
# Past the 4,300 digits Python's int() converts: the records API's fallback parser raised.
NUMBER_TOKENS += ["1" + "0" * 4300, "-" + "9" * 5000, "0." + "1" * 5000]
BAD_BYTES = [
    b"\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xfe\xff",
    b"\x00",
    b"\\ud800",
    b"\x80",
    b"\x1f",
]


def _binary(
    case: str, model: ServedModel, header: Document, raw: bytes, mentions: tuple[str, ...]
) -> HostileRequest:
    """A binary request: the JSON header, then ``raw``, its length in the protocol's header."""
    encoded = json_body(header)
    lengths = {BINARY_HEADER: str(len(encoded))}
    return HostileRequest(case, model.infer_path, encoded + raw, headers=lengths, mentions=mentions)


def _valid(draw: st.DrawFn, model: ServedModel, max_rows: int = 4) -> Document:
    return {"inputs": [model.tensor(draw(st.integers(1, max_rows)))]}


@st.composite
def wrong_datatypes(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    document = _valid(draw, model)
    datatype = draw(
        st.one_of(st.sampled_from(OTHER_DATATYPES), JUNK, st.lists(st.text(max_size=4)))
    )
    document["inputs"][0]["datatype"] = datatype
    mentions = ("datatype", f"must be {model.datatype}", "data cannot hold")
    return HostileRequest(
        "v2 JSON: wrong datatype", model.infer_path, json_body(document), mentions=mentions
    )


@st.composite
def wrong_element_types(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    document = _valid(draw, model)
    data = document["inputs"][0]["data"]
    for _ in range(draw(st.integers(1, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(
            st.one_of(st.text(max_size=5), st.booleans(), st.none(), st.lists(JUNK, max_size=2))
        )
    mentions = ("data cannot hold", "nested 'data'")
    return HostileRequest(
        "v2 JSON: strings and other types where numbers belong",
        model.infer_path,
        json_body(document),
        mentions=mentions,
    )


@st.composite
def extreme_numbers(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    """NaN, infinities, -0.0 and numbers too big for the tensor, as JSON and as non-JSON tokens."""
    document = _valid(draw, model)
    data = document["inputs"][0]["data"]
    position = draw(st.integers(0, len(data) - 1))
    token = draw(
        st.one_of(
            st.sampled_from(NUMBER_TOKENS),
            st.sampled_from([-0.0, 1e39, -1e39, 3.5e38, 1.7976931348623157e308, 5e-324]).map(repr),
            st.integers(-(2**70), 2**70).map(str),
            st.floats(allow_nan=False, allow_infinity=False).map(repr),
        )
    )
    data[position] = "@"
    body = json_body(document).replace(b'"@"', token.encode())
    # A fraction where the signature declares an int feature is refused as records do it.
    mentions = (
        "JSON",
        "range",
        "minimum",
        "maximum",
        "nan",
        "finite",
        "NaN or infinity",
        "integer",
    )
    return HostileRequest(
        "v2 JSON: NaN, infinities, -0.0 and huge numbers",
        model.infer_path,
        body,
        mentions=mentions,
        may_succeed=True,
    )


@st.composite
def disagreeing_shapes(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    rows = draw(st.integers(1, 4))
    document = _valid(draw, model)
    document["inputs"][0]["data"] = [0.0] * (rows * model.width)
    shape = draw(
        st.one_of(
            st.lists(st.integers(0, 2 * model.width), max_size=4),
            st.just([rows * model.width]),
            st.just([rows, model.width, 1]),
            st.just([2**40, 2**40]),
            st.just([1] * 65),
            st.lists(st.integers(-(2**63), -1), min_size=1, max_size=2),
            st.lists(JUNK, min_size=1, max_size=2),
            JUNK,
        ).filter(lambda s: s != [rows, model.width])
    )
    document["inputs"][0]["shape"] = shape
    mentions = ("shape", "elements", "holds no rows", "batch size")
    return HostileRequest(
        "v2 JSON: shapes that disagree with the data",
        model.infer_path,
        json_body(document),
        mentions=mentions,
    )


@st.composite
def huge_arrays(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    """Many rows (within what one request may queue), broken deep inside or not at all."""
    rows = draw(st.integers(500, 2048))
    document = {"inputs": [model.tensor(rows)]}
    data = document["inputs"][0]["data"]
    flaw = draw(st.sampled_from(["none", "short", "type", "range"]))
    if flaw == "short":
        del data[draw(st.integers(0, len(data) - 1))]
    elif flaw == "type":
        data[draw(st.integers(len(data) // 2, len(data) - 1))] = "0.0"
    elif flaw == "range":
        data[draw(st.integers(len(data) // 2, len(data) - 1))] = -1e39
    mentions = ("elements", "data cannot hold", "range")
    return HostileRequest(
        "v2 JSON: huge arrays",
        model.infer_path,
        json_body(document),
        mentions=mentions,
        may_succeed=flaw == "none",
    )


@st.composite
def broken_structure(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    """One structural rule of the protocol broken: what must be an object, list, name or flag."""
    document = _valid(draw, model)
    tensor = document["inputs"][0]
    kind = draw(st.sampled_from(sorted(_STRUCTURE_BREAKS)))
    replacement: Any = document
    mentions = _STRUCTURE_BREAKS[kind]
    if kind == "top level":
        replacement = draw(st.one_of(st.lists(JUNK, max_size=2), JUNK))
    elif kind == "inputs":
        document["inputs"] = draw(st.one_of(st.just([]), st.just([5]), JUNK))
    elif kind == "name":
        tensor["name"] = draw(st.one_of(st.just(""), st.integers(), st.none(), st.lists(st.text())))
    elif kind == "unknown input":
        tensor["name"] = draw(
            st.text(max_size=12).filter(lambda n: n not in ("", model.input_name))
        )
    elif kind == "duplicate input":
        document["inputs"].append(copy.deepcopy(tensor))
    elif kind == "outputs":
        known = draw(st.sampled_from(model.outputs))
        unknown = st.text(min_size=1, max_size=8).filter(lambda n: n not in model.outputs)
        document["outputs"] = draw(
            st.one_of(
                st.lists(unknown, min_size=1, max_size=3).map(lambda ns: [{"name": n} for n in ns]),
                st.just([{"name": known}, {"name": known}]),
                st.just([{"name": known, "parameters": {"binary_data": "yes"}}]),
                st.just([7]),
                st.just({"name": known}),
            )
        )
    elif kind == "id":
        document["id"] = draw(st.one_of(st.integers(), st.lists(st.text()), st.booleans()))
    elif kind == "parameters":
        document["parameters"] = draw(
            st.one_of(st.lists(st.integers(), max_size=2), st.text(), st.integers())
        )
    elif kind == "binary_data_output":
        document["parameters"] = {"binary_data_output": draw(st.one_of(st.text(), st.integers()))}
    elif kind == "shared memory":
        tensor["parameters"] = {"shared_memory_region": "region", "shared_memory_byte_size": 8}
    elif kind == "data and binary":
        tensor["parameters"] = {"binary_data_size": 4}
    elif kind == "no data":
        del tensor["data"]
    return HostileRequest(
        "v2 JSON: broken message structure",
        model.infer_path,
        json_body(replacement),
        mentions=mentions,
    )


_STRUCTURE_BREAKS: dict[str, tuple[str, ...]] = {
    "top level": ("JSON object", "'inputs'"),
    "inputs": ("inputs",),
    "name": ("'name' must be a non-empty string",),
    "unknown input": ("has no input", "is missing"),
    "duplicate input": ("more than once",),
    "outputs": ("output",),
    "id": ("'id' must be a string",),
    "parameters": ("'parameters' must be an object",),
    "binary_data_output": ("binary_data_output",),
    "shared memory": ("shared-memory",),
    "data and binary": ("both 'data' and a binary_data_size",),
    "no data": ("neither 'data' nor",),
}


@st.composite
def deep_nesting(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    # Past the 1024 levels orjson parses; the wrapper adds a few of its own.
    depth = draw(st.integers(1_100, 30_000))
    where = draw(st.sampled_from(["data", "parameters", "top level"]))
    if where == "data":
        nested = b"[" * depth + b"]" * depth
        body = json_body({"inputs": [{**model.tensor(1), "data": "@"}]}).replace(b'"@"', nested)
    elif where == "parameters":
        nested = b'{"a":' * depth + b"1" + b"}" * depth
        body = json_body({"inputs": [model.tensor(1)], "parameters": "@"}).replace(b'"@"', nested)
    else:
        body = b"[" * depth + b"]" * depth
    return HostileRequest("v2 JSON: deep nesting", model.infer_path, body, mentions=("JSON",))


@st.composite
def invalid_encoding(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    """Bytes that are not UTF-8 (or are JSON-escaped lone surrogates) anywhere in the body."""
    body = json_body(_valid(draw, model, max_rows=1))
    position = draw(st.integers(0, len(body)))
    bad = draw(st.sampled_from(BAD_BYTES))
    mentions = ("JSON", "UTF-8")
    return HostileRequest(
        "v2 JSON: invalid UTF-8",
        model.infer_path,
        body[:position] + bad + body[position:],
        mentions=mentions,
    )


def v2_json_requests(model: ServedModel) -> st.SearchStrategy[HostileRequest]:
    return st.one_of(
        wrong_datatypes(model),
        wrong_element_types(model),
        extreme_numbers(model),
        disagreeing_shapes(model),
        huge_arrays(model),
        broken_structure(model),
        deep_nesting(model),
        invalid_encoding(model),
    )


# -- binary tensor data -----------------------------------------------------------


@st.composite
def lying_header_lengths(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    """An Inference-Header-Content-Length that is not where the JSON header ends."""
    header, raw = model.binary_request(draw(st.integers(1, 3)))
    encoded = json_body(header)
    claimed = draw(
        st.one_of(
            st.integers(-(2**70), 2**70).filter(lambda n: n != len(encoded)).map(str),
            st.integers(-40, 40).filter(bool).map(lambda d: str(len(encoded) + d)),
            st.sampled_from(["", "abc", "12.0", "0x40", "1e3", "-0", "NaN"]),
        )
    )
    return HostileRequest(
        "v2 binary: Inference-Header-Content-Length lies",
        model.infer_path,
        encoded + raw,
        headers={BINARY_HEADER: claimed},
        mentions=(BINARY_HEADER, "JSON"),
    )


@st.composite
def lying_data_sizes(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    """binary_data_size larger or smaller than the bytes that follow, or not a size at all."""
    header, raw = model.binary_request(draw(st.integers(1, 3)))
    tensor = header["inputs"][0]
    tensor["parameters"]["binary_data_size"] = draw(
        st.one_of(
            st.integers(-(2**64), 2**64).filter(lambda n: n != len(raw)),
            st.integers(-8, 8).filter(bool).map(lambda d: len(raw) + d),
            st.sampled_from([str(len(raw)), float(len(raw)), True, [len(raw)]]),
        )
    )
    if draw(st.booleans()):
        # A second tensor after the first: its size decides where the first one ends.
        header["inputs"].append(
            {
                "name": "second",
                "datatype": "FP32",
                "shape": [1],
                "parameters": {"binary_data_size": 4},
            }
        )
        raw += struct.pack("<f", 1.0)
    return _binary("v2 binary: binary_data_size lies", model, header, raw, ("binary_data_size",))


@st.composite
def body_length_disagrees(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    """The body holds more or fewer tensor bytes than the header's sizes add up to."""
    header, raw = model.binary_request(draw(st.integers(1, 3)))
    if draw(st.booleans()):
        raw += draw(st.binary(min_size=1, max_size=64))
    else:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    case = "v2 binary: body longer or shorter than its sizes"
    return _binary(case, model, header, raw, ("binary_data_size", "bytes"))


@st.composite
def hostile_tensor_bytes(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    """Element bytes a datatype cannot hold: BOOL not 0/1, BYTES lengths that lie or bad UTF-8,
    and NaN or infinity where the signature forbids them."""
    kind = draw(st.sampled_from(["bool", "bytes", "non-finite"]))
    rows = draw(st.integers(1, 3))
    count = rows * model.width
    if kind == "bool":
        raw = bytes(draw(st.lists(st.integers(0, 255), min_size=count, max_size=count)))
        raw = raw[:-1] + bytes([draw(st.integers(2, 255))])
        tensor = {"datatype": "BOOL", "shape": [rows, model.width]}
        mentions: tuple[str, ...] = ("BOOL element", "must be")
    elif kind == "bytes":
        element = draw(st.binary(max_size=12))
        length = draw(st.integers(0, 2**32 - 1))
        raw = struct.pack("<I", length) + element
        if length == len(element):
            raw = struct.pack("<I", len(element) + 1) + b"\xff" + element
        tensor = {"datatype": "BYTES", "shape": [1]}
        mentions = ("BYTES element", "BYTES elements")
    else:
        # Valid but for the one non-finite value: whole numbers where a feature is an int.
        values = [0.0 if f in model.integer_features else 0.5 for f in model.features] * rows
        values[draw(st.integers(0, count - 1))] = draw(
            st.sampled_from([float("nan"), float("inf"), -float("inf")])
        )
        raw = struct.pack(f"<{count}f", *values)
        tensor = {"datatype": "FP32", "shape": [rows, model.width]}
        # An int feature refuses infinity as records do: not an integer.
        mentions = ("nan", "not a finite number", "integer")
    header = {
        "inputs": [
            {"name": model.input_name, **tensor, "parameters": {"binary_data_size": len(raw)}}
        ]
    }
    return _binary(
        "v2 binary: element bytes the datatype cannot hold", model, header, raw, mentions
    )


def v2_binary_requests(model: ServedModel) -> st.SearchStrategy[HostileRequest]:
    return st.one_of(
        lying_header_lengths(model),
        lying_data_sizes(model),
        body_length_disagrees(model),
        hostile_tensor_bytes(model),
    )
