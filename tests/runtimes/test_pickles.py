"""Recognising pickle streams by content, without unpickling them."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keel.runtimes.pickles import looks_like_pickle

OBJECTS = [None, 42, 2.5, "text", [1, 2, 3], {"weights": [0.1, 0.2]}, (1, "a"), Path("/model")]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("obj", OBJECTS, ids=repr)
def test_every_protocol_is_recognised(protocol: int, obj: object) -> None:
    assert looks_like_pickle(pickle.dumps(obj, protocol=protocol))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_long_pickle_cut_short_is_recognised(protocol: int) -> None:
    payload = pickle.dumps({f"layer{i}": list(range(50)) for i in range(100)}, protocol=protocol)
    assert looks_like_pickle(payload[:4096])


def test_an_onnx_model_is_not_a_pickle(breast_cancer_onnx: Path) -> None:
    assert not looks_like_pickle(breast_cancer_onnx.read_bytes()[:4096])


def test_a_safetensors_file_is_not_a_pickle() -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    assert not looks_like_pickle(struct.pack("<Q", len(header)) + header + bytes(4))


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, world\n", b'{"a": 1}', b"\x00\x01\x02\x03" * 64, b"GIF89a\x01\x00\x01\x00"],
)
def test_ordinary_data_is_not_a_pickle(data: bytes) -> None:
    assert not looks_like_pickle(data)


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(obj=JSON_LIKE, protocol=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_pickles_of_arbitrary_values_are_recognised(obj: object, protocol: int) -> None:
    assert looks_like_pickle(pickle.dumps(obj, protocol=protocol))


@given(data=st.binary(max_size=512))
def test_arbitrary_bytes_give_an_answer_not_an_error(data: bytes) -> None:
    assert looks_like_pickle(data) in {True, False}
