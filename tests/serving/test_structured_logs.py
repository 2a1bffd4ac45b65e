"""``log.format = "json"`` and ``log.access``, read line by line off a real keel serve's output."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from keel_server import ServerProcess, start_server

from keel.log_output import JsonFormatter
from keel.web.access_log import trace_id_of

MODEL = "breast-cancer"
TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE}-b7ad6b7169203331-01"
V2_BODY = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [1.0] * 30}]}


def json_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """Every line the server wrote, each of which must be one JSON object."""
    lines = server.log.read_text().splitlines()
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return parsed


def access_lines(server: ServerProcess, path: str) -> list[dict[str, Any]]:
    return [
        line
        for line in json_lines(server)
        if line["logger"] == "keel.access" and line["path"] == path
    ]


def wait_for_lines(server: ServerProcess, path: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = access_lines(server, path)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} access lines for {path}:\n{server.log.read_text()}")


@pytest.fixture(scope="module")
def logged(demo_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    log = tmp_path_factory.mktemp("json-log") / "server.log"
    server = start_server(
        demo_registry, (f"{MODEL}@production",), log,
        KEEL_LOG__FORMAT="json", KEEL_LOG__ACCESS="true", KEEL_SERVER__WATCH_INTERVAL_S="0",
    )  # fmt: skip
    server.wait_ready()
    yield server
    server.stop()


def test_every_line_is_one_json_object_with_the_fields_of_its_event(
    logged: ServerProcess,
) -> None:
    lines = json_lines(logged)
    assert lines, "the server wrote nothing"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
        assert line["time"].endswith("Z")
    ready = [line for line in lines if "now answers with" in line["message"]]
    assert ready
    assert ready[0]["logger"] == "keel.serving"


def test_an_http_request_has_an_access_line_with_its_ids(logged: ServerProcess) -> None:
    path = f"/v2/models/{MODEL}/infer"
    with logged.client() as client:
        answer = client.post(
            path, json=V2_BODY, headers={"x-request-id": "req-1", "traceparent": TRACEPARENT}
        )
        refused = client.post(path, json={"inputs": []})
    assert answer.status_code == 200
    ok, bad = wait_for_lines(logged, path, 2)[-2:]
    assert ok["protocol"] == "HTTP"
    assert ok["method"] == "POST"
    assert (ok["status"], ok["bytes"]) == (200, len(answer.content))
    assert ok["model"] == MODEL
    assert ok["version"] == answer.headers["x-keel-model-version"]
    assert (ok["request_id"], ok["trace_id"]) == ("req-1", TRACE)
    assert 0 < ok["duration_ms"] < 10_000
    assert bad["status"] == refused.status_code == 400
    assert "request_id" not in bad
    assert "trace_id" not in bad


def test_a_grpc_call_has_an_access_line_with_its_ids(logged: ServerProcess) -> None:
    tensor = triton_grpc.InferInput("input", [1, 30], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 30), dtype=np.float32))
    with closing(triton_grpc.InferenceServerClient(logged.grpc_address)) as client:
        answer = client.infer(
            MODEL, [tensor], request_id="g-1", headers={"traceparent": TRACEPARENT}
        )
        with pytest.raises(triton_grpc.InferenceServerException):
            client.infer("no-such-model", [tensor])
    path = "/inference.GRPCInferenceService/ModelInfer"
    ok, missing = wait_for_lines(logged, path, 2)[-2:]
    assert (ok["protocol"], ok["method"], ok["status"]) == ("gRPC", "ModelInfer", "OK")
    assert ok["version"] == answer.get_response().model_version
    assert (ok["model"], ok["request_id"], ok["trace_id"]) == (MODEL, "g-1", TRACE)
    assert ok["bytes"] > 0
    assert (missing["status"], missing["model"], missing["bytes"]) == (
        "NOT_FOUND",
        "no-such-model",
        0,
    )


def test_workers_say_which_worker_wrote_a_line(demo_registry: Path, tmp_path: Path) -> None:
    server = start_server(
        demo_registry, (f"{MODEL}@production",), tmp_path / "server.log", ("--workers", "2"),
        KEEL_LOG__FORMAT="json", KEEL_SERVER__WATCH_INTERVAL_S="0",
    )  # fmt: skip
    try:
        server.wait_ready()
    finally:
        assert server.stop() == 0
    lines = json_lines(server)
    assert {line.get("worker") for line in lines if "now answers with" in line["message"]} == {0, 1}
    assert all(
        "worker" not in line for line in lines if line["message"].startswith("keel supervising")
    )


def test_a_failure_keeps_its_traceback_inside_its_line() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.LogRecord(
            "keel.x", logging.ERROR, __file__, 1, "it broke", None, sys.exc_info()
        )
    line = JsonFormatter(worker=3).format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["worker"] == 3
    assert "ValueError: broken" in parsed["exception"]


@pytest.mark.parametrize(
    ("value", "trace"),
    [
        (TRACEPARENT, TRACE),
        (f"00-{'0' * 32}-b7ad6b7169203331-01", None),
        ("00-xyz-b7ad6b7169203331-01", None),
        (None, None),
    ],
)
def test_the_trace_id_is_read_only_from_a_valid_traceparent(
    value: str | None, trace: str | None
) -> None:
    assert trace_id_of(value) == trace
