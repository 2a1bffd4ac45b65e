"""External-data locations of ONNX models are checked before onnxruntime reads them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from keel.errors import UnsafeArtifact
from keel.runtimes import check_onnx_external_data, load_runtime

WEIGHT = np.arange(6, dtype=np.float32).reshape(3, 2)
BIAS = np.array([0.5, -0.5], dtype=np.float32)


def affine_model() -> onnx.ModelProto:
    """y = x @ WEIGHT + BIAS, with both constants as initializers."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        initializer=[numpy_helper.from_array(WEIGHT, "w"), numpy_helper.from_array(BIAS, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def save_with_external_data(folder: Path) -> Path:
    """Save the affine model as ``folder/model.onnx``, its initializers in ``weights.bin``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save_model(
        affine_model(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return path


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    """An affine model in its own folder, its initializers in external file 'weights.bin'."""
    return save_with_external_data(tmp_path / "model")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A copy of the model's weights in a folder next to, not inside, the model's folder."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    path = folder / "outside.bin"
    path.write_bytes((tmp_path / "model" / "weights.bin").read_bytes())
    return path


def set_external_data(path: Path, **entries: str) -> None:
    """Rewrite the external-data entries of every initializer, keeping the others."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key in entries:
                entry.value = entries[entry.key]
    path.write_bytes(model.SerializeToString())


def test_model_with_external_data_in_its_folder_loads(model_path: Path) -> None:
    check_onnx_external_data(model_path)
    runtime = load_runtime(model_path)
    x = np.ones((2, 3), dtype=np.float32)
    np.testing.assert_allclose(runtime.predict({"x": x})["y"], x @ WEIGHT + BIAS)


def test_model_in_a_subfolder_of_the_model_folder_loads(model_path: Path) -> None:
    (model_path.parent / "data").mkdir()
    (model_path.parent / "weights.bin").rename(model_path.parent / "data" / "weights.bin")
    set_external_data(model_path, location="data/weights.bin")
    assert load_runtime(model_path).predict({"x": np.zeros((1, 3), np.float32)})["y"].shape == (
        1,
        2,
    )


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("../elsewhere/outside.bin", "climbs out with '..'"),
        ("sub/../../elsewhere/outside.bin", "climbs out with '..'"),
        ("weights.bin/..", "climbs out with '..'"),
        ("C:/elsewhere/outside.bin", "absolute path"),
        ("data\\weights.bin", "backslash"),
        ("*/_ORT_MEM_ADDR_/*", "not a file path"),
        ("missing.bin", "cannot be read"),
        (".", "names the model's folder itself"),
    ],
)
def test_location_text_that_could_escape_is_refused(
    model_path: Path, outside: Path, location: str, message: str
) -> None:
    set_external_data(model_path, location=location)
    with pytest.raises(UnsafeArtifact, match=message):
        check_onnx_external_data(model_path)


def test_absolute_location_is_refused_before_onnxruntime_reads_it(
    model_path: Path, outside: Path
) -> None:
    set_external_data(model_path, location=str(outside))
    # load_runtime, not only the check: onnxruntime would otherwise fail with its own
    # error (a RuntimeFailure) or, in some versions, read the file.
    with pytest.raises(UnsafeArtifact, match="is an absolute path"):
        load_runtime(model_path)


def test_symlink_to_a_file_outside_is_refused(model_path: Path, outside: Path) -> None:
    (model_path.parent / "link.bin").symlink_to(outside)
    set_external_data(model_path, location="link.bin")
    with pytest.raises(UnsafeArtifact, match="symbolic link"):
        load_runtime(model_path)


def test_symlinked_folder_on_the_way_is_refused(model_path: Path, outside: Path) -> None:
    (model_path.parent / "data").symlink_to(outside.parent, target_is_directory=True)
    set_external_data(model_path, location="data/outside.bin")
    with pytest.raises(UnsafeArtifact, match="symbolic link"):
        load_runtime(model_path)


def test_symlink_inside_the_folder_is_refused_too(model_path: Path) -> None:
    (model_path.parent / "alias.bin").symlink_to(model_path.parent / "weights.bin")
    set_external_data(model_path, location="alias.bin")
    with pytest.raises(UnsafeArtifact, match="symbolic link"):
        check_onnx_external_data(model_path)


def test_model_folder_reached_through_a_symlink_still_loads(model_path: Path) -> None:
    linked = model_path.parent.parent / "linked-model"
    linked.symlink_to(model_path.parent, target_is_directory=True)
    check_onnx_external_data(linked / "model.onnx")


def test_hard_link_to_a_file_outside_is_refused(model_path: Path, outside: Path) -> None:
    os.link(outside, model_path.parent / "hard.bin")
    set_external_data(model_path, location="hard.bin")
    with pytest.raises(UnsafeArtifact, match="2 hard links"):
        load_runtime(model_path)


def test_directory_location_is_refused(model_path: Path) -> None:
    (model_path.parent / "weights.dir").mkdir()
    set_external_data(model_path, location="weights.dir")
    with pytest.raises(UnsafeArtifact, match="not a regular file"):
        load_runtime(model_path)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"offset": "1000"}, "too few for offset 1000"),
        ({"offset": "0", "length": "1000"}, "too few for offset 0 and length 1000"),
        ({"offset": "-8"}, "malformed offset"),
        ({"length": "0x10"}, "malformed length"),
    ],
)
def test_offset_and_length_must_lie_inside_the_file(
    model_path: Path, entries: dict[str, str], message: str
) -> None:
    set_external_data(model_path, **entries)
    with pytest.raises(UnsafeArtifact, match=message):
        load_runtime(model_path)


def external_tensor(name: str, location: str) -> TensorProto:
    tensor = numpy_helper.from_array(np.zeros(1, dtype=np.float32), name)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    return tensor


def constant(name: str, location: str) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=external_tensor(name, location))


def model_around(graph_nodes: list[onnx.NodeProto], **model_fields: object) -> onnx.ModelProto:
    graph = helper.make_graph(
        graph_nodes, "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]
    )
    return helper.make_model(graph, **model_fields)


def nested_if(depth: int, location: str) -> onnx.GraphProto:
    """A branch graph holding an If whose branches nest ``depth`` levels further."""
    if depth == 0:
        nodes = [constant("y", location)]
    else:
        branch = nested_if(depth - 1, location)
        nodes = [
            helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", 9, [], [1])),
            helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch),
        ]
    return helper.make_graph(
        nodes, f"branch{depth}", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]
    )


def sparse_initializer_model(location: str) -> onnx.ModelProto:
    values = external_tensor("values", location)
    indices = numpy_helper.from_array(np.array([0], dtype=np.int64), "indices")
    model = model_around([])
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))
    return model


def function_model(location: str) -> onnx.ModelProto:
    function = helper.make_function(
        "local", "f", [], ["y"], [constant("y", location)], [helper.make_opsetid("", 17)]
    )
    return model_around(
        [helper.make_node("f", [], ["y"], domain="local")],
        functions=[function],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
    )


def training_model(location: str) -> onnx.ModelProto:
    model = model_around([])
    model.training_info.add().initialization.CopyFrom(
        helper.make_graph([constant("y", location)], "init", [], [])
    )
    return model


def constant_model(location: str) -> onnx.ModelProto:
    return model_around([constant("y", location)])


def loop_body_model(location: str) -> onnx.ModelProto:
    return model_around([helper.make_node("Loop", ["", ""], ["y"], body=nested_if(0, location))])


def deep_if_model(location: str) -> onnx.ModelProto:
    plain = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=helper.make_tensor("y", 1, [1], [0.0]))],
        "plain",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return model_around(
        [
            helper.make_node(
                "If", ["c"], ["y"], then_branch=nested_if(5, location), else_branch=plain
            )
        ]
    )


@pytest.mark.parametrize(
    "build",
    [
        constant_model,
        loop_body_model,
        deep_if_model,
        sparse_initializer_model,
        function_model,
        training_model,
    ],
)
def test_every_tensor_that_can_hold_external_data_is_checked(
    tmp_path: Path, build: Callable[[str], onnx.ModelProto]
) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(build("../outside.bin").SerializeToString())
    with pytest.raises(UnsafeArtifact, match=r"'\.\./outside\.bin'.*climbs out"):
        check_onnx_external_data(path)


def test_model_without_external_data_passes(breast_cancer_onnx: Path) -> None:
    check_onnx_external_data(breast_cancer_onnx)


def test_corrupt_protobuf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x0a\x3a\xff\xff\xff\xff\x0fgraph")
    with pytest.raises(UnsafeArtifact, match="not a valid ONNX model"):
        check_onnx_external_data(path)
