"""Which models may run on the event loop: those whose input shapes bound a run's cost."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

from keel.runtimes import ForwardPass, TensorSpec, check_safetensors_header, load_runtime
from keel.runtimes.onnx_cost import value_dependent_cost
from keel.runtimes.safetensors_runtime import SafetensorsRuntime

FLOAT_ROWS = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
FLOAT_OUT = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)


def model_of(
    nodes: list[onnx.NodeProto],
    initializers: Mapping[str, np.ndarray] | None = None,
    inputs: list[onnx.ValueInfoProto] | None = None,
    outputs: list[onnx.ValueInfoProto] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        inputs or [FLOAT_ROWS],
        outputs or [FLOAT_OUT],
        initializer=[numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def saved(model: onnx.ModelProto, tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def loop_on_a_value() -> onnx.ModelProto:
    """A Loop whose trip count is the request's first value: as many steps as it says."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Add", ["state", "one"], ["state_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [1]),
        ],
    )
    return model_of(
        [
            helper.make_node("ReduceMax", ["x"], ["most"], keepdims=0),
            helper.make_node("Cast", ["most"], ["trips"], to=TensorProto.INT64),
            helper.make_node("Loop", ["trips", "true", "zero"], ["y"], body=body),
        ],
        {
            "true": np.array(True),
            "zero": np.zeros(1, np.float32),
            "one": np.ones(1, np.float32),
        },
    )


def test_dense_arithmetic_is_bounded_by_shape() -> None:
    model = model_of(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Relu", ["h"], ["y"]),
        ],
        {"w": np.ones((4, 3), np.float32)},
    )
    assert value_dependent_cost(model) is None


@pytest.mark.parametrize(
    ("nodes", "initializers", "named"),
    [
        (
            [helper.make_node("NonZero", ["x"], ["y"])],
            {},
            "NonZero node, whose output size depends on input values",
        ),
        (
            [
                helper.make_node("ReduceMax", ["x"], ["most"], keepdims=0),
                helper.make_node("Range", ["start", "most", "step"], ["y"]),
            ],
            {"start": np.array(0, np.float32), "step": np.array(1, np.float32)},
            "Range node whose output size comes from request values ('most')",
        ),
        (
            [
                helper.make_node("Cast", ["x"], ["repeats"], to=TensorProto.INT64),
                helper.make_node("Tile", ["x", "repeats"], ["y"]),
            ],
            {},
            "Tile node whose output size comes from request values ('repeats')",
        ),
        (
            [helper.make_node("Custom", ["x"], ["y"], domain="example.ops")],
            {},
            "of domain 'example.ops', whose cost keel cannot see",
        ),
        (
            [helper.make_node("GreedySearch", ["x"], ["y"], domain="com.microsoft")],
            {},
            "GreedySearch node, which runs as many steps as its inputs say",
        ),
    ],
)
def test_ops_whose_work_values_choose_are_named(
    nodes: list[onnx.NodeProto], initializers: dict[str, np.ndarray], named: str
) -> None:
    reason = value_dependent_cost(model_of(nodes, initializers))
    assert reason is not None
    assert named in reason


def test_sizes_computed_from_shapes_and_constants_are_bounded() -> None:
    # What exporters emit everywhere: a range as long as the input, an expand to a constant.
    model = model_of(
        [
            helper.make_node("Shape", ["x"], ["shape"]),
            helper.make_node("Gather", ["shape", "first"], ["rows"]),
            helper.make_node("Cast", ["rows"], ["rows_float"], to=TensorProto.FLOAT),
            helper.make_node("Range", ["start", "rows_float", "step"], ["positions"]),
            helper.make_node("Constant", [], ["target"], value=numpy_helper.from_array(
                np.array([2, 4], np.int64))),
            helper.make_node("Expand", ["positions", "target"], ["y"]),
        ],
        {
            "first": np.array(0, np.int64),
            "start": np.array(0, np.float32),
            "step": np.array(1, np.float32),
        },
    )  # fmt: skip
    assert value_dependent_cost(model) is None


def test_a_function_body_is_looked_into() -> None:
    function = helper.make_function(
        "local", "Spread", ["a"], ["b"], [helper.make_node("NonZero", ["a"], ["b"])],
        [helper.make_opsetid("", 17)],
    )  # fmt: skip
    model = model_of([helper.make_node("Spread", ["x"], ["y"], domain="local")])
    model.functions.append(function)
    reason = value_dependent_cost(model)
    assert reason is not None
    assert "in function 'Spread'" in reason


def test_a_loop_on_a_request_value_keeps_an_onnx_model_off_the_loop(tmp_path: Path) -> None:
    runtime = load_runtime(saved(loop_on_a_value(), tmp_path))
    assert runtime.value_dependent_cost is not None
    assert "Loop node" in runtime.value_dependent_cost
    # The model itself is fine: three steps for a 3, as cheap as any warm-up row.
    result = runtime.predict({"x": np.full((1, 4), 3.0, np.float32)})
    np.testing.assert_allclose(result["y"], [3.0])


def test_a_plain_onnx_model_may_run_on_the_loop(breast_cancer_onnx: Path) -> None:
    assert load_runtime(breast_cancer_onnx).value_dependent_cost is None


def test_string_inputs_cost_what_their_lengths_say(tmp_path: Path) -> None:
    model = model_of(
        [helper.make_node("Identity", ["s"], ["t"])],
        inputs=[helper.make_tensor_value_info("s", TensorProto.STRING, [None, 1])],
        outputs=[helper.make_tensor_value_info("t", TensorProto.STRING, [None, 1])],
    )
    reason = load_runtime(saved(model, tmp_path)).value_dependent_cost
    assert reason is not None
    assert "['s'] hold strings" in reason


def test_numpy_mlp_is_bounded_and_an_undeclared_forward_is_not(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file(
        {
            "layers.0.weight": np.ones((4, 2), np.float32),
            "layers.0.bias": np.zeros(2, np.float32),
        },
        str(path),
    )
    config = {"activation": "relu", "output": "identity"}
    mlp = load_runtime(path, forward="numpy-mlp", forward_config=config)
    assert mlp.value_dependent_cost is None

    class Undeclared:
        def build(
            self, weights: Mapping[str, np.ndarray], config: Mapping[str, object]
        ) -> ForwardPass:
            return ForwardPass(
                inputs=(TensorSpec("x", "float32", (None, 4)),),
                outputs=(TensorSpec("y", "float32", (None, 4)),),
                run=lambda inputs: {"y": inputs["x"]},
            )

    other = SafetensorsRuntime(path, check_safetensors_header(path), Undeclared(), {})
    assert other.value_dependent_cost == (
        "its forward pass does not declare its cost bounded by input shapes"
    )
