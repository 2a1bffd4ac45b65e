"""Stock gRPC clients (tritonclient.grpc, sync and asyncio; grpc.health.v1) against keel serve.

The same protocol checks as test_v2_protocol's over REST: health, metadata, typed
and raw tensors, errors, version routing, configuration, statistics, the
repository index; and what gRPC adds: its status codes, compression, health.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from keel_server import ADMIN_TOKEN, ServerProcess, metric_sum, start_server
from tritonclient.grpc import service_pb2, service_pb2_grpc

from keel.registry import Registry

MODEL = "breast-cancer"


@pytest.fixture
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.grpc_address)
    yield client
    client.close()


@pytest.fixture
def stub(server: ServerProcess) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    """The protocol's own generated stub (tritonclient's), for messages the client never builds."""
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture
def golden(demo_registry) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    meta = Registry(demo_registry).resolve(f"{MODEL}@production")
    names = [f.name for f in meta.signature.features]
    x = np.array([[r[n] for n in names] for r in meta.golden.inputs], dtype=np.float32)
    return x, np.array(meta.golden.outputs["probabilities"], dtype=np.float32)


def _input(x: np.ndarray, name: str = "input") -> triton.InferInput:
    tensor = triton.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


def _code(error: triton.InferenceServerException) -> str:
    return str(error.status())


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, model_version="candidate")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "keel"
    assert server["extensions"] == [
        "binary_tensor_data",
        "model_configuration",
        "model_repository",
        "statistics",
    ]
    metadata = client.get_model_metadata(MODEL, as_json=True)
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "30"]}]
    assert {o["name"] for o in metadata["outputs"]} == {"label", "probabilities"}
    assert len(metadata["versions"]) == 2
    assert metadata["platform"] == "onnxruntime_onnx"


def test_raw_tensors_reproduce_golden_with_the_request_id(
    client: triton.InferenceServerClient, golden: tuple[np.ndarray, np.ndarray]
) -> None:
    x, expected = golden
    outputs = [triton.InferRequestedOutput("probabilities")]
    result = client.infer(MODEL, [_input(x)], outputs=outputs, request_id="req-7")
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-5)
    response = result.get_response()
    assert response.id == "req-7"
    assert [o.name for o in response.outputs] == ["probabilities"]
    assert result.as_numpy("label") is None
    assert (
        response.model_version
        == client.get_model_config(MODEL, as_json=True)["config"]["parameters"]["keel_version"][
            "string_value"
        ]
    )


def test_typed_contents_answer_as_raw_ones_do(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    client: triton.InferenceServerClient,
    golden: tuple[np.ndarray, np.ndarray],
) -> None:
    x, expected = golden
    request = service_pb2.ModelInferRequest(model_name=MODEL, id="typed")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    answer = stub.ModelInfer(request)
    by_name = dict(zip((o.name for o in answer.outputs), answer.raw_output_contents, strict=True))
    probabilities = np.frombuffer(by_name["probabilities"], dtype="<f4").reshape(len(x), 2)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    raw = client.infer(MODEL, [_input(x)])
    np.testing.assert_array_equal(probabilities, raw.as_numpy("probabilities"))


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        (lambda t, r: t.contents.int64_contents.extend([1] * 30), "INVALID_ARGUMENT",
         "FP32 data goes in fp32_contents, not int64_contents"),
        (lambda t, r: t.contents.fp32_contents.extend([1.0] * 29), "INVALID_ARGUMENT",
         "its shape needs 30 elements but fp32_contents has 29"),
        (lambda t, r: (t.contents.fp32_contents.extend([1.0] * 30),
                       r.raw_input_contents.append(b"\0" * 120)), "INVALID_ARGUMENT",
         "has typed contents but the request carries raw_input_contents"),
        (lambda t, r: r.raw_input_contents.append(b"\0" * 7), "INVALID_ARGUMENT",
         "raw_input_contents[0] has 7 bytes but its shape's 30 elements of FP32 take 120"),
        (lambda t, r: t.contents.fp32_contents.extend([-1.0] * 30), "INVALID_ARGUMENT",
         "below the minimum"),
        (lambda t, r: setattr(t, "datatype", "FP8"), "INVALID_ARGUMENT",
         "datatype 'FP8' is not one of"),
        (lambda t, r: setattr(r, "model_name", "no-such-model"), "NOT_FOUND", "not served here"),
        (lambda t, r: setattr(r, "model_name", ""), "INVALID_ARGUMENT", "names no model"),
        (lambda t, r: setattr(r, "model_version", "nightly"), "NOT_FOUND", "nightly"),
    ],
)  # fmt: skip
def test_refusals_name_the_problem_with_the_protocols_status(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, change: Any, code: str, message: str
) -> None:
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, 30])
    change(tensor, request)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request)
    assert refused.value.code().name == code
    assert message in refused.value.details()


def test_version_by_field_and_by_metadata(
    client: triton.InferenceServerClient, golden: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = golden
    versions = client.get_model_metadata(MODEL).versions
    for version in versions:
        result = client.infer(MODEL, [_input(x)], model_version=version)
        assert result.get_response().model_version == version
    candidate = client.get_model_config(MODEL, model_version="candidate", as_json=True)
    label = candidate["config"]["parameters"]["keel_version"]["string_value"]
    by_header = client.infer(MODEL, [_input(x)], headers={"x-keel-model-version": "candidate"})
    assert by_header.get_response().model_version == label


def test_a_safetensors_model_over_grpc(
    client: triton.InferenceServerClient, demo_registry: Any
) -> None:
    meta = Registry(demo_registry).resolve("digits-mlp@production")
    names = [f.name for f in meta.signature.features]
    x = np.array([[r[n] for n in names] for r in meta.golden.inputs], dtype=np.float32)
    result = client.infer("digits-mlp", [_input(x)])
    np.testing.assert_array_equal(result.as_numpy("label"), meta.golden.outputs["label"])
    assert client.get_model_config("digits-mlp").config.platform == "keel_safetensors"


def test_model_config_in_tritons_shape(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config(MODEL).config
    assert config.platform == "onnxruntime_onnx"
    assert config.backend == "onnxruntime"
    assert config.max_batch_size == 64
    [tensor] = config.input
    assert (tensor.name, tensor.data_type, list(tensor.dims)) == ("input", 11, [30])  # TYPE_FP32
    outputs = {o.name: o for o in config.output}
    assert list(outputs["probabilities"].dims) == [2]
    assert list(outputs["label"].dims) == [1]
    assert outputs["label"].HasField("reshape")
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    with pytest.raises(triton.InferenceServerException) as refused:
        client.get_model_config("no-such-model")
    assert _code(refused.value) == "StatusCode.NOT_FOUND"


def test_repository_index_wants_the_token_in_metadata(
    client: triton.InferenceServerClient,
) -> None:
    with pytest.raises(triton.InferenceServerException) as refused:
        client.get_model_repository_index()
    assert _code(refused.value) == "StatusCode.UNAUTHENTICATED"
    assert "bearer token" in refused.value.message()
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    index = client.get_model_repository_index(headers=auth, as_json=True)["models"]
    assert sorted((e["name"], e["state"]) for e in index) == [
        (MODEL, "READY"),
        (MODEL, "READY"),
        ("digits-mlp", "READY"),
    ]
    with pytest.raises(triton.InferenceServerException) as refused:
        client.load_model(MODEL, headers=auth, config='{"max_batch_size": 8}')
    assert _code(refused.value) == "StatusCode.INVALID_ARGUMENT"
    assert "unknown load parameter 'config'" in refused.value.message()


def test_statistics_and_metrics_count_grpc_requests(
    client: triton.InferenceServerClient,
    server: ServerProcess,
    golden: tuple[np.ndarray, np.ndarray],
) -> None:
    x, _ = golden
    label = client.get_model_config(MODEL, as_json=True)["config"]["parameters"]["keel_version"][
        "string_value"
    ]

    def stats() -> Any:
        [mine] = [
            s for s in client.get_inference_statistics(MODEL).model_stats if s.version == label
        ]
        return mine

    def counted(status: str) -> float:
        return metric_sum(
            server, "keel_requests_total", model_version=label, endpoint="grpc_infer", status=status
        )

    before, ok_before, bad_before = stats(), counted("200"), counted("422")
    for _ in range(4):
        client.infer(MODEL, [_input(x)])
    with pytest.raises(triton.InferenceServerException):
        client.infer(MODEL, [_input(np.full((1, 30), -1.0, dtype=np.float32))])
    after = stats()
    assert after.inference_stats.success.count - before.inference_stats.success.count == 4
    assert after.inference_stats.fail.count - before.inference_stats.fail.count == 1
    assert after.inference_count - before.inference_count == 4 * len(x)
    assert (counted("200") - ok_before, counted("422") - bad_before) == (4, 1)
    every = client.get_inference_statistics().model_stats
    assert sorted(s.name for s in every) == [MODEL, MODEL, "digits-mlp"]


def test_the_asyncio_client(server: ServerProcess, golden: tuple[np.ndarray, np.ndarray]) -> None:
    x, expected = golden

    async def use() -> None:
        client = triton_aio.InferenceServerClient(server.grpc_address)
        try:
            assert await client.is_server_ready()
            assert await client.is_model_ready(MODEL)
            metadata = await client.get_model_metadata(MODEL)
            assert metadata.inputs[0].name == "input"
            answers = await asyncio.gather(
                *(client.infer(MODEL, [_input(x)], request_id=str(k)) for k in range(16))
            )
            for k, answer in enumerate(answers):
                assert answer.get_response().id == str(k)
                np.testing.assert_allclose(answer.as_numpy("probabilities"), expected, atol=1e-5)
            stats = await client.get_inference_statistics(MODEL)
            assert stats.model_stats
        finally:
            await client.close()

    asyncio.run(use())


def test_compressed_requests_are_inflated_and_a_bomb_is_refused(
    client: triton.InferenceServerClient,
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    golden: tuple[np.ndarray, np.ndarray],
) -> None:
    x, expected = golden
    for algorithm in ("gzip", "deflate"):
        result = client.infer(MODEL, [_input(x)], compression_algorithm=algorithm)
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-5)
    # 64 MiB of zeros in a tensor: about 64 KiB on the wire once gzipped, a thousand
    # times this server's 64 KiB limit when inflated.
    bomb = service_pb2.ModelInferRequest(model_name=MODEL)
    bomb.inputs.add(name="input", datatype="FP32", shape=[1, 30])
    bomb.raw_input_contents.append(bytes(64 << 20))
    assert len(gzip.compress(bomb.SerializeToString())) < 128 << 10
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(bomb, compression=grpc.Compression.Gzip)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert time.monotonic() - started < 5
    assert client.infer(MODEL, [_input(x)]).as_numpy("probabilities") is not None


@pytest.mark.parametrize(
    "method",
    [
        "/inference.GRPCInferenceService/ModelInfer",
        "/inference.GRPCInferenceService/RepositoryIndex",
        "/grpc.health.v1.Health/Check",
    ],
)
def test_bytes_that_are_no_message_are_invalid_argument_and_leave_no_traceback(
    server: ServerProcess, method: str
) -> None:
    before = server.log.read_text()
    with grpc.insecure_channel(server.grpc_address) as channel:
        call = channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.RpcError) as refused:
            call(b"\xff\xff\xff", timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the request is not a valid " in refused.value.details()
    assert "Traceback" not in server.log.read_text()[len(before) :]


def test_streaming_is_refused_in_words(client: triton.InferenceServerClient) -> None:
    answers: list[Any] = []
    client.start_stream(callback=lambda result, error: answers.append(error))
    # The refusal may end the stream before the request goes: the client then says so.
    with contextlib.suppress(triton.InferenceServerException):
        client.async_stream_infer(MODEL, [_input(np.full((1, 30), 0.5, dtype=np.float32))])
    deadline = time.monotonic() + 10
    while not answers and time.monotonic() < deadline:
        time.sleep(0.01)
    client.stop_stream()
    [error] = answers
    assert "StatusCode.UNIMPLEMENTED" in str(error.status())
    assert "keel does not serve ModelStreamInfer" in error.message()


def test_the_deadline_metadata_is_read_as_on_rest(client: triton.InferenceServerClient) -> None:
    tensor = _input(np.full((1, 30), 0.5, dtype=np.float32))
    with pytest.raises(triton.InferenceServerException) as refused:
        client.infer(MODEL, [tensor], headers={"x-keel-deadline-ms": "abc"})
    assert _code(refused.value) == "StatusCode.INVALID_ARGUMENT"
    assert "x-keel-deadline-ms 'abc' is not a number" in refused.value.message()
    answer = client.infer(MODEL, [tensor], headers={"x-keel-deadline-ms": "5000"})
    assert answer.as_numpy("label") is not None


def test_stalled_calls_and_open_watches_leave_others_served(server: ServerProcess) -> None:
    """A call whose message never comes, or a health Watch left open, costs the server
    nothing another call needs: 100 of each, and a Check and an inference still answer."""
    never = threading.Event()

    def no_message() -> Iterator[bytes]:
        never.wait()
        yield b""

    with grpc.insecure_channel(server.grpc_address) as hostile:
        stalled = [
            hostile.stream_unary("/inference.GRPCInferenceService/ModelInfer").future(no_message())
            for _ in range(100)
        ]
        watches = [
            health_pb2_grpc.HealthStub(hostile).Watch(health_pb2.HealthCheckRequest())
            for _ in range(100)
        ]
        assert all(
            next(watch).status == health_pb2.HealthCheckResponse.SERVING for watch in watches
        )
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(server.grpc_address, options=options) as other:
            started = time.monotonic()
            checked = health_pb2_grpc.HealthStub(other).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert checked.status == health_pb2.HealthCheckResponse.SERVING
            client = triton.InferenceServerClient(server.grpc_address)
            answer = client.infer(MODEL, [_input(np.full((1, 30), 0.5, dtype=np.float32))])
            client.close()
            assert answer.as_numpy("label") is not None
            assert time.monotonic() - started < 5
        for call in stalled:
            call.cancel()
        for watch in watches:
            watch.cancel()
        never.set()


def test_two_hundred_calls_at_once_on_one_connection_are_all_answered(
    server: ServerProcess, golden: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = golden

    async def burst() -> list[Any]:
        client = triton_aio.InferenceServerClient(server.grpc_address)
        try:
            await client.is_server_ready()  # the connection is open before the burst
            return await asyncio.gather(
                *(client.infer(MODEL, [_input(x)]) for _ in range(200)), return_exceptions=True
            )
        finally:
            await client.close()

    answers = asyncio.run(burst())
    failures = [answer for answer in answers if isinstance(answer, Exception)]
    assert not failures, failures[:3]


def test_the_standard_health_service_answers_from_readiness(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        for service in ("", "inference.GRPCInferenceService", MODEL, "digits-mlp"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == serving
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="no-such-model"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert next(watch).status == serving
        watch.cancel()


def test_sigterm_tells_a_health_watch_and_stops_without_waiting_out_the_grace(
    demo_registry: Path, tmp_path: Path
) -> None:
    server = start_server(demo_registry, (f"{MODEL}@production",), tmp_path / "server.log")
    try:
        server.wait_ready()
        with grpc.insecure_channel(server.grpc_address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            statuses: list[object] = []
            try:
                statuses.extend(answer.status for answer in watch)
            except grpc.RpcError as error:
                statuses.append(error.code())
            assert statuses == [health_pb2.HealthCheckResponse.NOT_SERVING], (
                statuses,
                server.log.read_text(),
            )
        assert server.process.wait(15) == 0, server.log.read_text()
        # The grace period is 20 s: nothing waited it out.
        assert time.monotonic() - started < 10
    finally:
        server.stop()


def test_the_serving_docs_grpc_example_runs_as_written(server: ServerProcess) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()
    section = docs[docs.index("## gRPC") :]
    example = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert example is not None, "docs/serving.md's gRPC section has no Python example"
    script = example[1].replace("127.0.0.1:8081", server.grpc_address)
    assert script != example[1], "the example no longer names the default address"
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert "[[" in ran.stdout  # the probabilities, as numpy prints them
