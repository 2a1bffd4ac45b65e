"""Tensors as JSON text in the prediction log, and back to numpy arrays.

A record's tensors become one JSON object, ``{name: {"dtype", "shape", "data"}}``:
readable with any SQL client or ``jq``, and decoded to arrays of the same dtype and
shape. JSON has no NaN or infinity: orjson writes them as ``null``, which float
arrays read back as NaN (so an infinity comes back as NaN).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from keel.logstore.records import Tensors

# orjson writes these dtypes straight from the array's buffer; the rest go through
# tolist(). Strings and objects have no fixed-width JSON form, so they always do.
_NATIVE_KINDS = frozenset("biuf")


def encode_tensors(tensors: Tensors) -> str:
    """The JSON text of ``tensors``; raises ``TypeError`` for values JSON cannot hold."""
    document = {
        name: {"dtype": _dtype_name(array.dtype), "shape": list(array.shape), "data": _data(array)}
        for name, array in tensors.items()
    }
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY, default=_json_default).decode()


def decode_tensors(text: str) -> dict[str, npt.NDArray[Any]]:
    """The arrays ``encode_tensors`` wrote, with their dtypes and shapes."""
    document = orjson.loads(text)
    return {
        name: np.array(tensor["data"], dtype=np.dtype(tensor["dtype"])).reshape(tensor["shape"])
        for name, tensor in document.items()
    }


@functools.cache
def _dtype_name(dtype: np.dtype[Any]) -> str:
    # str(dtype) takes several microseconds in numpy 2, as long as the rest of a
    # small tensor's encoding; a process meets only a handful of dtypes.
    return str(dtype)


def _data(array: npt.NDArray[Any]) -> object:
    # orjson refuses non-native byte order rather than falling back to `default`.
    if array.dtype.kind in _NATIVE_KINDS and array.dtype.isnative:
        return array
    return array.tolist()


def _json_default(value: object) -> object:
    # orjson hands over what it cannot write itself: non-contiguous arrays, and the
    # odd bytes or numpy scalar inside an object array.
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"a {type(value).__name__} cannot be stored in the prediction log")
