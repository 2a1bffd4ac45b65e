"""Models the suite builds from ONNX graphs and publishes: real files, real ONNX Runtime.

* ``wide-mlp``: the digits signature in front of two 2048-unit layers of random weights,
  about a millisecond a row. Its cost is the model's, not the HTTP stack's, so under
  overload the batcher's queue is where requests pile up (and are shed). Untrained:
  the overload suite needs its cost, not its accuracy, and training one takes ~20 s.
* ``store-lookup``: a score per store from a 16-row table, indexed by the request's
  ``store`` id. The signature leaves the id unbounded, as a careless one would, so an
  id past the table is valid input that ONNX Runtime refuses at run time.
* ``loop-steps``: a ``Loop`` whose trip count is the request's ``steps`` feature, each
  step a 64x256 by 256x256 ``MatMul``. The signature leaves ``steps`` unbounded, so one
  row may cost seconds of real compute while warm-up's synthetic rows (``steps`` of
  -10 to 0) and the golden rows cost microseconds.
* ``log-of-input``: the natural logarithm of the request's ``x``, which the signature
  leaves unbounded: a valid ``x`` of 0 makes the model answer minus infinity, a negative
  one NaN, while the golden rows (1 to 4) are finite.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from keel import publish
from keel.examples.digits_mlp import build_signature
from keel.registry import ModelMetadata, Registry
from keel.signature import Feature, Output, Signature

WIDE_MLP = "wide-mlp"
STORE_LOOKUP = "store-lookup"
LOOP_STEPS = "loop-steps"
LOG_OF_INPUT = "log-of-input"
LOOP_WIDTH = 256
LOOP_ROWS = 64
HIDDEN = 2048
STORES = 16
# A store id that passes the signature but lies outside the lookup table.
UNKNOWN_STORE = 1000


def publish_wide_mlp(registry: Path, scratch: Path) -> ModelMetadata:
    """Publish ``wide-mlp@production``: 64 pixels in, 10 probabilities and a label out."""
    rng = np.random.default_rng(0)
    widths = [64, HIDDEN, HIDDEN, 10]
    weights = []
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        scale = np.sqrt(2.0 / fan_in) / (16 if layer == 0 else 1)
        weight = (rng.standard_normal((fan_in, fan_out)) * scale).astype(np.float32)
        weights += [
            numpy_helper.from_array(weight, f"w{layer}"),
            numpy_helper.from_array(np.zeros(fan_out, np.float32), f"b{layer}"),
        ]
    nodes = []
    previous = "input"
    for layer in range(3):
        nodes += [
            helper.make_node("MatMul", [previous, f"w{layer}"], [f"m{layer}"]),
            helper.make_node("Add", [f"m{layer}", f"b{layer}"], [f"a{layer}"]),
        ]
        previous = f"a{layer}"
        if layer < 2:
            nodes.append(helper.make_node("Relu", [previous], [f"r{layer}"]))
            previous = f"r{layer}"
    nodes += [
        helper.make_node("Softmax", [previous], ["probabilities"], axis=1),
        helper.make_node("ArgMax", [previous], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        WIDE_MLP,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 64])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10]),
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
        ],
        initializer=weights,
    )
    return _publish(graph, WIDE_MLP, build_signature(), registry, scratch)


def publish_store_lookup(registry: Path, scratch: Path) -> ModelMetadata:
    """Publish ``store-lookup@production``: a store id in, that store's score out."""
    table = np.linspace(0.0, 1.0, STORES, dtype=np.float32).reshape(STORES, 1)
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["input"], ["id"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["id", "flat"], ["ids"]),
            helper.make_node("Gather", ["table", "ids"], ["score"], axis=0),
        ],
        STORE_LOOKUP,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([-1], np.int64), "flat"),
        ],
    )
    signature = Signature(
        features=[Feature(name="store", dtype="int", description="store id (not bounded)")],
        outputs=[Output(name="score", dtype="float32", shape=[None, 1], kind="score")],
    )
    golden = [{"store": store} for store in range(STORES)]
    return _publish(graph, STORE_LOOKUP, signature, registry, scratch, golden)


def publish_log_of_input(registry: Path, scratch: Path) -> ModelMetadata:
    """Publish ``log-of-input@production``: ``x`` in, its natural logarithm out."""
    graph = helper.make_graph(
        [helper.make_node("Log", ["input"], ["value"])],
        LOG_OF_INPUT,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])],
    )
    signature = Signature(
        features=[Feature(name="x", dtype="float", description="any number (not bounded)")],
        outputs=[Output(name="value", dtype="float32", shape=[None, 1], kind="regression")],
    )
    golden = [{"x": x} for x in range(1, 5)]
    return _publish(graph, LOG_OF_INPUT, signature, registry, scratch, golden)


def build_loop_steps() -> bytes:
    """The ``loop-steps`` ONNX model: as many MatMul steps as the batch's largest ``steps``."""
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((LOOP_WIDTH, LOOP_WIDTH)) / np.sqrt(LOOP_WIDTH)).astype(
        np.float32
    )
    state = rng.standard_normal((LOOP_ROWS, LOOP_WIDTH)).astype(np.float32)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["state_in", "weight"], ["product"]),
            # Tanh keeps the state finite however many steps run.
            helper.make_node("Tanh", ["product"], ["state_out"]),
        ],
        "step",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [LOOP_ROWS, LOOP_WIDTH]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [LOOP_ROWS, LOOP_WIDTH]),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["input"], ["most"], keepdims=0),
            helper.make_node("Relu", ["most"], ["steps_float"]),
            helper.make_node("Cast", ["steps_float"], ["steps"], to=TensorProto.INT64),
            helper.make_node("Loop", ["steps", "keep_going", "state"], ["final"], body=body),
            helper.make_node("ReduceMean", ["final"], ["level"], keepdims=0),
            # One score per row: the request's own steps, plus the loop's (tiny) result.
            helper.make_node("Mul", ["level", "tiny"], ["offset"]),
            helper.make_node("Add", ["input", "offset"], ["score"]),
        ],
        LOOP_STEPS,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        initializer=[
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(state, "state"),
            numpy_helper.from_array(np.array(True), "keep_going"),
            numpy_helper.from_array(np.array(1e-6, np.float32), "tiny"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return bytes(model.SerializeToString())


def publish_loop_steps(registry: Path, scratch: Path) -> ModelMetadata:
    """Publish ``loop-steps@production``: ``steps`` in, ``steps`` (nearly) back out."""
    artifact = scratch / f"{LOOP_STEPS}.onnx"
    artifact.write_bytes(build_loop_steps())
    signature = Signature(
        features=[Feature(name="steps", dtype="int", description="loop steps (not bounded)")],
        outputs=[Output(name="score", dtype="float32", shape=[None, 1], kind="score")],
    )
    return publish(
        artifact,
        name=LOOP_STEPS,
        signature=signature,
        registry=Registry(registry),
        golden=[{"steps": steps} for steps in range(4)],
        alias="production",
        source_dir=scratch,
        allow_untracked=True,
    )


def _publish(
    graph: object,
    name: str,
    signature: Signature,
    registry: Path,
    scratch: Path,
    golden: list[dict[str, int]] | None = None,
) -> ModelMetadata:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    artifact = scratch / f"{name}.onnx"
    artifact.write_bytes(model.SerializeToString())
    return publish(
        artifact,
        name=name,
        signature=signature,
        registry=Registry(registry),
        golden=golden,
        alias="production",
        source_dir=scratch,
        allow_untracked=True,
    )
