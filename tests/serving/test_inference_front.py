"""The ASGI front that answers the inference routes without Starlette."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from keel_server import ServerProcess

from keel.errors import PayloadTooLarge
from keel.registry import Registry
from keel.serving.protocols.paths import match
from keel.web.request_body import ClientGone, read_body


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/models/m/predict", ("records", "m", None)),
        ("/v1/models/m/versions/abc-1/predict", ("records", "m", "abc-1")),
        ("/v2/models/m/infer", ("v2_infer", "m", None)),
        ("/v2/models/m/versions/candidate/infer", ("v2_infer", "m", "candidate")),
    ],
)
def test_inference_paths_are_matched_with_their_parameters(
    path: str, expected: tuple[str, str, str | None]
) -> None:
    assert match(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/m",
        "/v2/models/m/ready",
        "/v2/models//infer",
        "/v2/models/m/versions//infer",
        "/v2/models/m/other/v/infer",
        "/v1/models/m/infer",
        "/v2/models/m/predict",
        "/v3/models/m/infer",
        "/v2/things/m/infer",
        "v2/models/m/infer/",
        "/v2/models/m/infer/extra",
    ],
)
def test_other_paths_are_left_to_starlette(path: str) -> None:
    assert match(path) is None


def _receiver(messages: list[dict[str, Any]]) -> Any:
    pending = iter(messages)

    async def receive() -> dict[str, Any]:
        return next(pending)

    return receive


def test_a_body_in_chunks_is_joined_and_the_limit_counts_every_chunk() -> None:
    chunks = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]
    assert asyncio.run(read_body(_receiver(chunks), {}, 4)) == b"abcd"
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_body(_receiver(chunks), {}, 3))


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    with pytest.raises(PayloadTooLarge, match="100 bytes"):
        asyncio.run(read_body(_receiver([]), {"content-length": "100"}, 10))


def test_a_client_that_leaves_mid_body_is_noticed() -> None:
    messages = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.disconnect"},
    ]
    with pytest.raises(ClientGone):
        asyncio.run(read_body(_receiver(messages), {}, 100))


@pytest.fixture(scope="module")
def record(demo_registry: Path) -> dict[str, Any]:
    return dict(Registry(demo_registry).resolve("breast-cancer@production").golden.inputs[0])


def test_a_get_on_an_inference_path_is_405_naming_post(server: ServerProcess) -> None:
    with server.client() as client:
        response = client.get("/v2/models/breast-cancer/infer")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "POST" in response.json()["error"]


def test_a_chunked_body_is_served_and_limited(
    server: ServerProcess, record: dict[str, Any]
) -> None:
    def chunks(body: bytes) -> Iterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    small = orjson.dumps({"instances": [record]})
    large = orjson.dumps({"instances": [record] * 200})
    with server.client() as client:
        served = client.post("/v1/models/breast-cancer/predict", content=chunks(small))
        refused = client.post("/v1/models/breast-cancer/predict", content=chunks(large))
    assert served.status_code == 200, served.text
    assert len(served.json()["predictions"]) == 1
    assert refused.status_code == 413
    assert "limit" in refused.json()["error"]


def test_the_answer_names_its_version_in_a_header(server: ServerProcess) -> None:
    with server.client() as client:
        response = client.post(
            "/v2/models/breast-cancer/infer",
            json={"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
                              "data": [1.0] * 30}]},
        )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.headers["x-keel-model-version"] == response.json()["model_version"]
    assert response.headers["content-type"] == "application/json"
