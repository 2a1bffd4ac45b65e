"""An existing Open Inference Protocol client (Triton's) works against keel unchanged."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from keel_server import ADMIN_TOKEN, ServerProcess, metric_sum

from keel.registry import Registry


@pytest.fixture
def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server.url.removeprefix("http://"))


@pytest.fixture
def golden(demo_registry) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    meta = Registry(demo_registry).resolve("breast-cancer@production")
    names = [f.name for f in meta.signature.features]
    x = np.array([[r[n] for n in names] for r in meta.golden.inputs], dtype=np.float32)
    return x, np.array(meta.golden.outputs["probabilities"], dtype=np.float32)


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("breast-cancer")
    assert client.is_model_ready("breast-cancer", model_version="candidate")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata("breast-cancer")
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}]
    assert {o["name"] for o in metadata["outputs"]} == {"label", "probabilities"}
    assert len(metadata["versions"]) == 2
    assert metadata["keel"]["state"] == "ready"
    assert metadata["keel"]["aliases"] == ["production"]


@pytest.mark.parametrize("binary", [False, True])
def test_inference_json_and_binary_reproduce_golden(
    client: triton.InferenceServerClient, golden: tuple[np.ndarray, np.ndarray], binary: bool
) -> None:
    x, expected = golden
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary)]
    result = client.infer("breast-cancer", [tensor], outputs=outputs, request_id="req-7")
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-5)
    response = result.get_response()
    assert response["id"] == "req-7"
    assert [o["name"] for o in response["outputs"]] == ["probabilities"]
    assert result.as_numpy("label") is None


def test_version_by_path_answers_with_that_version(
    client: triton.InferenceServerClient, golden: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = golden
    versions = client.get_model_metadata("breast-cancer")["versions"]
    for version in versions:
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        result = client.infer("breast-cancer", [tensor], model_version=version)
        assert result.get_response()["model_version"] == version


def test_digits_mlp_over_the_protocol(client: triton.InferenceServerClient, demo_registry) -> None:  # type: ignore[no-untyped-def]
    meta = Registry(demo_registry).resolve("digits-mlp@production")
    names = [f.name for f in meta.signature.features]
    x = np.array([[r[n] for n in names] for r in meta.golden.inputs], dtype=np.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    result = client.infer("digits-mlp", [tensor])
    np.testing.assert_array_equal(result.as_numpy("label"), meta.golden.outputs["label"])


def test_errors_use_the_protocol_error_body(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input", [1, 30], "FP32")
    tensor.set_data_from_numpy(np.full((1, 30), -1.0, dtype=np.float32))
    with pytest.raises(triton.InferenceServerException, match="below the minimum"):
        client.infer("breast-cancer", [tensor])
    with pytest.raises(triton.InferenceServerException, match="not served here"):
        client.get_model_metadata("no-such-model")


def test_model_config_in_tritons_shape(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("breast-cancer")
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 64
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [30]}]
    outputs = {o["name"]: o for o in config["output"]}
    assert outputs["probabilities"] == {
        "name": "probabilities",
        "data_type": "TYPE_FP32",
        "dims": [2],
    }
    assert outputs["label"]["dims"] == [1]
    assert outputs["label"]["reshape"] == {"shape": []}
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    production = config["parameters"]["keel_version"]["string_value"]
    candidate = client.get_model_config("breast-cancer", model_version="candidate")
    assert candidate["parameters"]["keel_aliases"]["string_value"] == "candidate"
    assert candidate["parameters"]["keel_version"]["string_value"] != production
    safetensors = client.get_model_config("digits-mlp")
    assert safetensors["platform"] == "keel_safetensors"
    with pytest.raises(triton.InferenceServerException, match="not served here"):
        client.get_model_config("no-such-model")


def test_repository_index_lists_every_served_version_behind_the_token(
    client: triton.InferenceServerClient, server: ServerProcess
) -> None:
    with pytest.raises(triton.InferenceServerException, match="bearer token"):
        client.get_model_repository_index()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    index = client.get_model_repository_index(headers=auth)
    names = sorted((entry["name"], entry["state"]) for entry in index)
    assert names == [
        ("breast-cancer", "READY"),
        ("breast-cancer", "READY"),
        ("digits-mlp", "READY"),
    ]
    versions = client.get_model_metadata("breast-cancer")["versions"]
    assert sorted(e["version"] for e in index if e["name"] == "breast-cancer") == versions
    with httpx.Client(base_url=server.url, headers=auth) as http:
        assert http.post("/v2/repository/index", json={"ready": True}).json() == index
        refused = http.post("/v2/repository/index", json={"ready": "yes"})
    assert refused.status_code == 400
    assert refused.json() == {"error": 'the body must be {} or {"ready": true|false}'}


def test_inference_statistics_count_what_metrics_count(
    client: triton.InferenceServerClient,
    server: ServerProcess,
    golden: tuple[np.ndarray, np.ndarray],
) -> None:
    x, _ = golden
    label = client.get_model_metadata("breast-cancer")["keel"]["version"]

    def stats() -> dict[str, Any]:
        every = client.get_inference_statistics("breast-cancer")["model_stats"]
        [mine] = [s for s in every if s["version"] == label]
        return mine

    before = stats()
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    for _ in range(5):
        client.infer("breast-cancer", [tensor])
    bad = triton.InferInput("input", [1, 30], "FP32")
    bad.set_data_from_numpy(np.full((1, 30), -1.0, dtype=np.float32))
    with pytest.raises(triton.InferenceServerException):
        client.infer("breast-cancer", [bad])
    after = stats()
    delta = {
        kind: after["inference_stats"][kind]["count"] - before["inference_stats"][kind]["count"]
        for kind in after["inference_stats"]
    }
    assert delta == {
        "success": 5, "fail": 1, "queue": 5,
        "compute_input": 5, "compute_infer": 5, "compute_output": 5,
    }  # fmt: skip
    assert after["inference_count"] - before["inference_count"] == 5 * len(x)
    assert 1 <= after["execution_count"] - before["execution_count"] <= 5
    assert all(after["inference_stats"][kind]["ns"] > 0 for kind in delta)
    assert abs(after["last_inference"] / 1000 - time.time()) < 60
    answered = metric_sum(server, "keel_requests_total", model_version=label, status="200")
    assert after["inference_stats"]["success"]["count"] == answered
    # The model runs on the event loop here, where uvloop's clock does not move during
    # a run: its durations are read from time.perf_counter(), and are never zero.
    runs = metric_sum(server, "keel_inference_duration_seconds_sum", model_version=label)
    assert runs > 0
    rows = metric_sum(server, "keel_batch_size_sum", model_version=label)
    assert after["inference_count"] == rows  # the server's own warm-up runs in neither


def test_statistics_for_every_model_a_version_and_none_unknown(
    client: triton.InferenceServerClient,
) -> None:
    every = client.get_inference_statistics()["model_stats"]
    assert sorted(s["name"] for s in every) == ["breast-cancer", "breast-cancer", "digits-mlp"]
    candidate = client.get_inference_statistics("breast-cancer", model_version="candidate")
    [only] = candidate["model_stats"]
    assert (
        only["version"]
        == client.get_model_config("breast-cancer", model_version="candidate")["parameters"][
            "keel_version"
        ]["string_value"]
    )
    assert "statistics" in client.get_server_metadata()["extensions"]
    with pytest.raises(triton.InferenceServerException, match="not served here"):
        client.get_inference_statistics("no-such-model")
