"""``keel publish`` refuses a signature that contradicts the model, naming tensor and both sides.

Real models: a scikit-learn classifier on iris exported with skl2onnx, and small
ONNX graphs whose dimensions are left symbolic, so only the golden rows show them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from keel import publish
from keel.errors import SignatureError
from keel.registry import Registry
from keel.signature import Feature, Output, Signature
from support import run_keel

SPECIES = ["setosa", "versicolor", "virginica"]
MEASUREMENTS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _features() -> list[Feature]:
    return [Feature(name=n, dtype="float", minimum=0.0, maximum=20.0) for n in MEASUREMENTS]


def _iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data.astype(np.float32), data.target


@pytest.fixture(scope="module")
def iris_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logistic regression on iris: label int64[?], probabilities float32[?, 3]."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    x, y = _iris()
    model = LogisticRegression(max_iter=500).fit(x, y)
    exported = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, len(MEASUREMENTS)]))],
        options={"zipmap": False},
        target_opset=17,
    )
    path = tmp_path_factory.mktemp("iris") / "model.onnx"
    path.write_bytes(exported.SerializeToString())
    return path


@pytest.fixture(scope="module")
def iris_named_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same classifier trained on species names: its label output is a string tensor."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    x, y = _iris()
    model = LogisticRegression(max_iter=500).fit(x, np.array(SPECIES)[y])
    exported = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, len(MEASUREMENTS)]))],
        options={"zipmap": False},
        target_opset=17,
    )
    path = tmp_path_factory.mktemp("iris-named") / "model.onnx"
    path.write_bytes(exported.SerializeToString())
    return path


@pytest.fixture(scope="module")
def iris_rows() -> list[dict[str, Any]]:
    x, _ = _iris()
    # Every tenth row: all three species, 15 rows.
    return [dict(zip(MEASUREMENTS, map(float, row), strict=True)) for row in x[::10]]


def _iris_signature(*outputs: Output) -> Signature:
    return Signature(features=_features(), outputs=list(outputs))


def _publish(artifact: Path, signature: Signature, tmp_path: Path, **kwargs: Any) -> Any:
    return publish(
        artifact,
        name="iris",
        signature=signature,
        registry=tmp_path / "registry",
        allow_untracked=True,
        source_dir=tmp_path,
        **kwargs,
    )


def _graph_file(tmp_path: Path, graph: onnx.GraphProto) -> Path:
    path = tmp_path / "model.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


PROBABILITIES = Output(
    name="probabilities", dtype="float32", shape=[None, 3], kind="probability", labels=SPECIES
)
LABEL = Output(name="label", dtype="int64", shape=[None], kind="label", labels=SPECIES)


def test_a_signature_that_matches_the_model_publishes(
    iris_onnx: Path, iris_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    meta = _publish(iris_onnx, _iris_signature(LABEL, PROBABILITIES), tmp_path, reference=iris_rows)
    assert "probabilities[virginica]" in meta.reference.predictions
    assert Registry(tmp_path / "registry").resolve(meta.ref).version == meta.version


def test_five_labels_on_a_model_with_three_columns_are_refused(
    iris_onnx: Path, iris_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    five = [*SPECIES, "unknown-1", "unknown-2"]
    wide = Output(
        name="probabilities", dtype="float32", shape=[None, 5], kind="probability", labels=five
    )
    with pytest.raises(SignatureError) as refused:
        _publish(iris_onnx, _iris_signature(LABEL, wide), tmp_path, reference=iris_rows)
    message = str(refused.value)
    assert "output 'probabilities' is declared float32[?, 5] with 5 labels" in message
    assert "the model gives float32[?, 3]" in message
    assert Registry(tmp_path / "registry").models() == []


def test_labels_imply_the_width_where_the_declared_shape_leaves_it_open(
    iris_onnx: Path, iris_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    open_width = Output(
        name="probabilities",
        dtype="float32",
        shape=[None, None],
        kind="probability",
        labels=["setosa", "other"],
    )
    with pytest.raises(SignatureError, match=r"'probabilities' is declared float32\[\?, \?\] "
                       r"with 2 labels \(a last dimension of 2\) but the model gives "
                       r"float32\[\?, 3\]"):  # fmt: skip
        _publish(iris_onnx, _iris_signature(open_width), tmp_path, reference=iris_rows)


def test_an_int32_output_on_a_model_that_returns_int64_is_refused(
    iris_onnx: Path, iris_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    int32 = Output(name="label", dtype="int32", shape=[None], kind="label", labels=SPECIES)
    with pytest.raises(
        SignatureError,
        match=r"output 'label' is declared int32\[\?\] with 3 labels but the model gives "
        r"int64\[\?\]",
    ):
        _publish(iris_onnx, _iris_signature(int32, PROBABILITIES), tmp_path, reference=iris_rows)


def test_an_output_of_another_rank_is_refused(
    iris_onnx: Path, iris_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    column = Output(name="label", dtype="int64", shape=[None, 1], kind="label", labels=SPECIES)
    with pytest.raises(SignatureError, match=r"'label' is declared int64\[\?, 1\].*int64\[\?\]"):
        _publish(iris_onnx, _iris_signature(column), tmp_path, reference=iris_rows)


def test_an_input_narrower_than_the_features_is_refused(
    iris_onnx: Path, iris_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    extra = Feature(name="petal_count", dtype="int", minimum=0, maximum=10)
    signature = Signature(features=[*_features(), extra], outputs=[LABEL])
    rows = [{**row, "petal_count": 3} for row in iris_rows]
    with pytest.raises(
        SignatureError,
        match=r"input 'input' is float32\[\?, 5\] in the signature \(5 columns from its "
        r"features\) but float32\[\?, 4\] in the model",
    ):
        _publish(iris_onnx, signature, tmp_path, reference=rows)


def test_an_input_of_another_dtype_is_refused(
    iris_onnx: Path, iris_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    signature = Signature.model_validate(
        {
            "features": _features(),
            "inputs": [{"name": "input", "dtype": "float64", "features": MEASUREMENTS}],
            "outputs": [LABEL],
        }
    )
    with pytest.raises(SignatureError, match=r"input 'input' is float64\[\?, 4\] in the "
                       r"signature but float32\[\?, 4\] in the model"):  # fmt: skip
        _publish(iris_onnx, signature, tmp_path, reference=iris_rows)


def test_a_model_with_a_fixed_batch_of_one_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["score"])],
        "fixed-batch",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])],
    )
    signature = Signature(
        features=[Feature(name="x", dtype="float")],
        outputs=[Output(name="score", dtype="float32", shape=[None, 1], kind="score")],
    )
    with pytest.raises(SignatureError, match="input 'input' has a fixed first dimension of 1"):
        _publish(_graph_file(tmp_path, graph), signature, tmp_path, golden=[{"x": 1.0}])


def _symbolic_softmax(tmp_path: Path) -> Path:
    """Softmax over the input's columns; the graph says only [N, k] for both sides."""
    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["input"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["input"], ["label"], axis=1, keepdims=0),
        ],
        "symbolic-softmax",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", "k"])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", "k"]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        ],
    )
    return _graph_file(tmp_path, graph)


def _scores(width: int) -> list[Feature]:
    return [Feature(name=f"s{i}", dtype="float") for i in range(width)]


def test_a_symbolic_width_is_checked_on_the_golden_rows(tmp_path: Path) -> None:
    five = Output(
        name="probabilities",
        dtype="float32",
        shape=[None, 5],
        kind="probability",
        labels=list("abcde"),
    )
    signature = Signature(features=_scores(3), outputs=[five])
    golden = [{"s0": 1.0, "s1": 2.0, "s2": 0.5}, {"s0": 0.0, "s1": 0.0, "s2": 3.0}]
    with pytest.raises(
        SignatureError,
        match=r"outputs for 2 golden row\(s\) do not match the signature: output "
        r"'probabilities' is declared float32\[\?, 5\] with 5 labels \(a last dimension of 5\) "
        r"but the model gave float32\[2, 3\]",
    ):
        _publish(_symbolic_softmax(tmp_path), signature, tmp_path, golden=golden)


def test_a_label_index_past_the_declared_labels_is_refused(tmp_path: Path) -> None:
    two = Output(name="label", dtype="int64", shape=[None], kind="label", labels=["a", "b"])
    signature = Signature(features=_scores(3), outputs=[two])
    golden = [{"s0": 1.0, "s1": 2.0, "s2": 0.5}, {"s0": 0.0, "s1": 0.0, "s2": 3.0}]
    with pytest.raises(
        SignatureError,
        match=r"output 'label' gave label index 2 for golden row 1, but it declares 2 labels "
        r"\(indices 0 to 1\)",
    ):
        _publish(_symbolic_softmax(tmp_path), signature, tmp_path, golden=golden)


def test_a_string_label_outside_the_declared_labels_is_refused(
    iris_named_onnx: Path, iris_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    named = Output(name="label", dtype="string", shape=[None], kind="label", labels=SPECIES[:2])
    with pytest.raises(
        SignatureError,
        match=r"output 'label' gave 'virginica' for golden row \d+, which is not one of its "
        r"declared labels \['setosa', 'versicolor'\]",
    ):
        _publish(iris_named_onnx, _iris_signature(named), tmp_path, reference=iris_rows)
    complete = Output(name="label", dtype="string", shape=[None], kind="label", labels=SPECIES)
    _publish(iris_named_onnx, _iris_signature(complete), tmp_path, reference=iris_rows)


def test_keel_publish_refuses_and_names_the_output(
    iris_onnx: Path, iris_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    int32 = Output(name="label", dtype="int32", shape=[None], kind="label", labels=SPECIES)
    signature_file = tmp_path / "signature.json"
    signature_file.write_text(_iris_signature(int32).to_json())
    reference = tmp_path / "reference.jsonl"
    reference.write_text("".join(json.dumps(r) + "\n" for r in iris_rows))
    result = run_keel(
        "publish", str(iris_onnx), "--name", "iris", "--signature", str(signature_file),
        "--reference", str(reference), "--registry", str(tmp_path / "registry"),
        "--source-dir", str(tmp_path), "--allow-untracked",
    )  # fmt: skip
    assert result.returncode != 0
    assert "output 'label' is declared int32[?] with 3 labels but the model gives int64[?]" in (
        result.stdout + result.stderr
    )
    assert "Traceback" not in result.stderr
