"""Run an ONNX model with ONNX Runtime on the CPU, configured from RuntimeSettings."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from keel.errors import RuntimeFailure
from keel.runtimes.onnx_cost import value_dependent_cost
from keel.runtimes.runtime import Runtime, TensorSpec
from keel.settings import RuntimeSettings

_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# ONNX element types as onnxruntime spells them, mapped to numpy dtype names.
_ELEMENT_TYPES = {
    "float": "float32",
    "double": "float64",
    "float16": "float16",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "bool": "bool",
    "string": "object",
}
_TENSOR_TYPE = re.compile(r"tensor\((\w+)\)")
# onnxruntime's errors derive from Exception directly, not from one base of their own.
ORT_ERRORS = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.NoSuchFile,
    ort_state.NoModel,
    ort_state.EngineError,
    ort_state.RuntimeException,
    ort_state.InvalidProtobuf,
    ort_state.ModelLoaded,
    ort_state.NotImplemented,
    ort_state.InvalidGraph,
    ort_state.EPFail,
    RuntimeError,
    ValueError,
)


class OnnxRuntime(Runtime):
    """An ONNX model in an onnxruntime InferenceSession, CPU execution provider only."""

    format: ClassVar[str] = "onnx"

    def __init__(self, path: Path, settings: RuntimeSettings, graph: Path | None = None) -> None:
        """Open ``path``; load_runtime has already sniffed it and checked its external data.

        ``graph`` is the model as published when ``path`` is a layout derived from it
        (``onnx_layout``): its cost is judged on the graph its author wrote, not on one
        rewritten by ONNX Runtime's optimisations for this CPU.
        """
        try:
            session = ort.InferenceSession(
                str(path),
                sess_options=session_options(settings),
                providers=["CPUExecutionProvider"],
            )
        except ORT_ERRORS as exc:
            raise RuntimeFailure(f"ONNX Runtime could not load {path}: {exc}") from exc
        self._path = path
        self._graph = graph or path
        super().__init__(
            tuple(_spec(path, "input", arg) for arg in session.get_inputs()),
            tuple(_spec(path, "output", arg) for arg in session.get_outputs()),
        )
        # The session's C++ binding, called directly: InferenceSession.run only checks
        # again what Runtime.predict has checked (input names; ORT values' devices and
        # WebGPU capture, which a CPU session never has) and costs about 1 us a call more
        # (measured, onnxruntime 1.32). tests/runtimes pins that the binding is there.
        self._session: Any = session._sess
        self._output_names = [spec.name for spec in self._outputs]

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Read once: close() may clear the attribute while this call is running, and the
        # local reference keeps the session alive until the call returns.
        session = self._session
        if session is None:
            raise RuntimeFailure(f"the ONNX model {self._path} has been closed")
        names = self._output_names
        try:
            # InferenceSession.run is documented as safe to call from several threads.
            results = session.run(names, dict(inputs), None)
        except ORT_ERRORS as exc:
            raise RuntimeFailure(f"ONNX Runtime failed running {self._path}: {exc}") from exc
        return {name: np.asarray(value) for name, value in zip(names, results, strict=True)}

    def close(self) -> None:
        self._session = None

    @functools.cached_property
    def _graph_caveat(self) -> str | None:
        # Parsed only when a server asks (a fast model it may run on its event loop):
        # publish, verify and slow models never pay for reading the graph twice.
        return _graph_caveat(self._graph)

    def _cost_caveat(self) -> str | None:
        return self._graph_caveat


def _graph_caveat(path: Path) -> str | None:
    """Why the graph's cost may depend on input values (see keel.runtimes.onnx_cost)."""
    try:
        # The graph only: external weights are ONNX Runtime's to read, and already were.
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError) as exc:
        return f"its graph could not be inspected: {exc}"
    return value_dependent_cost(model)


def session_options(settings: RuntimeSettings) -> ort.SessionOptions:
    """Build the onnxruntime options keel runs every model with."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = _OPTIMIZATION_LEVELS[settings.graph_optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning worker threads poll for work instead of sleeping: they shave microseconds
    # off a busy model and burn whole cores on an idle one, on a box shared with the
    # batcher and with other models.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # sniff_format established the file is an ONNX protobuf; never let onnxruntime read
    # it as its own flatbuffer format instead.
    options.add_session_config_entry("session.load_model_format", "ONNX")
    return options


def _spec(path: Path, role: str, arg: Any) -> TensorSpec:
    match = _TENSOR_TYPE.fullmatch(arg.type)
    if match is None:
        hint = (
            " This is the ZipMap output of a scikit-learn classifier: export it with "
            "options={'zipmap': False} (skl2onnx) to get a plain probability tensor."
            if arg.type.startswith("seq(map(")
            else ""
        )
        raise RuntimeFailure(
            f"{path}: {role} '{arg.name}' has type {arg.type}; keel serves tensors only.{hint}"
        )
    dtype = _ELEMENT_TYPES.get(match[1])
    if dtype is None:
        raise RuntimeFailure(
            f"{path}: {role} '{arg.name}' has element type {match[1]}, which numpy cannot hold"
        )
    # Symbolic dimensions ("N", "batch_size") and unknown ones come back as str or None.
    shape = tuple(dim if isinstance(dim, int) else None for dim in arg.shape)
    return TensorSpec(name=arg.name, dtype=dtype, shape=shape)
