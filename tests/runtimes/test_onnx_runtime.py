"""Running ONNX models: a real scikit-learn export against scikit-learn itself."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
from skl2onnx import to_onnx
from sklearn.pipeline import Pipeline

from keel.errors import RuntimeFailure
from keel.runtimes import Runtime, TensorSpec, load_runtime
from keel.runtimes.onnx_runtime import session_options
from keel.settings import RuntimeSettings

BreastCancer = tuple[np.ndarray, Pipeline]


@pytest.fixture
def runtime(breast_cancer_onnx: Path) -> Runtime:
    return load_runtime(breast_cancer_onnx)


def test_probabilities_match_scikit_learn(runtime: Runtime, breast_cancer: BreastCancer) -> None:
    features, classifier = breast_cancer
    result = runtime.predict({"X": features.astype(np.float32)})
    np.testing.assert_allclose(
        result["probabilities"], classifier.predict_proba(features), atol=1e-5
    )
    np.testing.assert_array_equal(result["label"], classifier.predict(features))


def test_runs_call_the_session_binding_itself(runtime: Runtime) -> None:
    # OnnxRuntime calls the C++ session InferenceSession.run wraps (1 us a call less): an
    # onnxruntime upgrade that moves it fails here rather than failing every request.
    assert isinstance(runtime._session, ort_state.InferenceSession)  # type: ignore[attr-defined]


def test_specs_come_from_the_model(runtime: Runtime) -> None:
    assert runtime.format == "onnx"
    assert runtime.inputs == (TensorSpec("X", "float32", (None, 30)),)
    assert runtime.outputs == (
        TensorSpec("label", "int64", (None,)),
        TensorSpec("probabilities", "float32", (None, 2)),
    )


def test_wrong_dtype_is_refused_not_cast(runtime: Runtime, breast_cancer: BreastCancer) -> None:
    features, _ = breast_cancer
    with pytest.raises(RuntimeFailure, match="input 'X' has dtype float64, expected float32"):
        runtime.predict({"X": features})


def test_missing_and_extra_inputs_are_refused(runtime: Runtime) -> None:
    with pytest.raises(RuntimeFailure, match=r"missing input\(s\) \['X'\]"):
        runtime.predict({"x": np.zeros((1, 30), dtype=np.float32)})


def test_zipmap_output_is_refused_with_the_fix(breast_cancer: BreastCancer, tmp_path: Path) -> None:
    features, classifier = breast_cancer
    path = tmp_path / "zipmap.onnx"
    path.write_bytes(
        to_onnx(classifier, features[:1].astype(np.float32), target_opset=17).SerializeToString()
    )
    with pytest.raises(RuntimeFailure, match=r"ZipMap.*options=\{'zipmap': False\}"):
        load_runtime(path)


def test_concurrent_predictions_agree(runtime: Runtime, breast_cancer: BreastCancer) -> None:
    features = breast_cancer[0].astype(np.float32)
    expected = runtime.predict({"X": features})["probabilities"]
    batches = [features[start : start + 50] for start in range(0, len(features), 50)] * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda batch: runtime.predict({"X": batch}), batches))
    got = np.concatenate([r["probabilities"] for r in results[: len(results) // 4]])
    np.testing.assert_array_equal(got, expected)


def test_predict_after_close_fails_clearly(runtime: Runtime) -> None:
    runtime.close()
    with pytest.raises(RuntimeFailure, match="has been closed"):
        runtime.predict({"X": np.zeros((1, 30), dtype=np.float32)})


def test_session_options_follow_the_settings() -> None:
    options = session_options(
        RuntimeSettings(intra_op_threads=3, inter_op_threads=2, graph_optimization="basic")
    )
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 2
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_settings_are_applied_when_loading(breast_cancer_onnx: Path) -> None:
    settings = RuntimeSettings(intra_op_threads=2, graph_optimization="disable")
    runtime = load_runtime(breast_cancer_onnx, settings=settings)
    assert runtime.predict({"X": np.zeros((2, 30), dtype=np.float32)})["label"].shape == (2,)


def test_a_forward_is_refused_for_onnx(breast_cancer_onnx: Path) -> None:
    with pytest.raises(RuntimeFailure, match="carries its own graph"):
        load_runtime(breast_cancer_onnx, forward="numpy-mlp")


def test_an_empty_forward_config_is_accepted_for_onnx(breast_cancer_onnx: Path) -> None:
    assert load_runtime(breast_cancer_onnx, forward_config={}).format == "onnx"


def test_model_onnxruntime_cannot_load_is_a_runtime_failure(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    # A well-formed ModelProto holding only an IR version and no graph.
    path.write_bytes(b"\x08\x0a")
    with pytest.raises(RuntimeFailure, match="ONNX Runtime could not load"):
        load_runtime(path)


def test_failure_inside_onnxruntime_is_a_runtime_failure(tmp_path: Path) -> None:
    shape = numpy_helper.from_array(np.array([4], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        initializer=[shape],
    )
    path = tmp_path / "model.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    path.write_bytes(model.SerializeToString())
    runtime = load_runtime(path)
    # Three values cannot be reshaped into four: only onnxruntime finds out, at run time.
    with pytest.raises(RuntimeFailure, match="ONNX Runtime failed running"):
        runtime.predict({"x": np.zeros((1, 3), dtype=np.float32)})
