"""Compressed requests and answers, with stock clients: tritonclient's gzip and deflate, curl's way.

The server fixture's body limit is 64 KiB (``KEEL_SERVER__MAX_BODY_BYTES``): it applies
to a body as it inflates.
"""

from __future__ import annotations

import gzip
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import psutil
import pytest
import tritonclient.http as triton
from keel_server import ServerProcess

from keel.registry import Registry

MODEL = "breast-cancer"
PREDICT = f"/v1/models/{MODEL}/predict"


@pytest.fixture(scope="module")
def golden(demo_registry: Path) -> tuple[list[dict[str, Any]], np.ndarray]:
    meta = Registry(demo_registry).resolve(f"{MODEL}@production")
    records = [dict(r) for r in meta.golden.inputs]
    return records, np.array([list(r.values()) for r in records], dtype=np.float32)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_compressed_requests_and_answers(
    server: ServerProcess,
    golden: tuple[list[dict[str, Any]], np.ndarray],
    algorithm: str,
    binary: bool,
) -> None:
    _, rows = golden
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    x = np.resize(rows, (60, rows.shape[1]))  # under the body limit, even as JSON
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    plain = client.infer(MODEL, [tensor])
    result = client.infer(
        MODEL,
        [tensor],
        request_compression_algorithm=algorithm,
        response_compression_algorithm="gzip",
    )
    np.testing.assert_array_equal(result.as_numpy("probabilities"), plain.as_numpy("probabilities"))


def test_a_gzipped_records_body_is_answered_as_the_plain_one(
    server: ServerProcess, golden: tuple[list[dict[str, Any]], np.ndarray]
) -> None:
    records, _ = golden
    body = orjson.dumps({"instances": records[:3]})
    with httpx.Client(base_url=server.url) as client:
        plain = client.post(PREDICT, content=body, headers={"content-type": "application/json"})
        zipped = client.post(
            PREDICT,
            content=gzip.compress(body),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
    assert zipped.status_code == 200, zipped.text
    assert zipped.json() == plain.json()


def test_a_decompression_bomb_is_refused_at_the_limit_and_the_server_carries_on(
    server: ServerProcess, golden: tuple[list[dict[str, Any]], np.ndarray]
) -> None:
    records, _ = golden
    # 16 MiB of spaces after valid JSON: 16 KiB on the wire, 256 times the limit inflated.
    bomb = gzip.compress(orjson.dumps({"instances": records[:1]}) + b" " * (16 << 20))
    assert len(bomb) < 65536
    with httpx.Client(base_url=server.url) as client:
        refused = client.post(PREDICT, content=bomb, headers={"content-encoding": "gzip"})
        after = client.post(PREDICT, json={"instances": records[:1]})
    assert refused.status_code == 413
    assert refused.json() == {
        "error": "the gzip body inflates past the limit of 65536 bytes "
        "(the limit is on the body once inflated)"
    }
    assert after.status_code == 200


def _gibibyte_bomb() -> bytes:
    """1 GiB of zeros gzipped twice: under 4 KiB on the wire (Content-Encoding: gzip, gzip)."""
    inner = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    mebibyte = bytes(1 << 20)
    once = b"".join([*(inner.compress(mebibyte) for _ in range(1024)), inner.flush()])
    return gzip.compress(once, 9)


def test_a_gibibyte_bomb_from_a_few_kib_is_refused_having_cost_the_limit(
    server: ServerProcess, golden: tuple[list[dict[str, Any]], np.ndarray]
) -> None:
    records, _ = golden
    bomb = _gibibyte_bomb()
    assert len(bomb) < 4096
    process = psutil.Process(server.process.pid)
    resident_before = process.memory_info().rss
    with httpx.Client(base_url=server.url) as client:
        started = time.monotonic()
        refused = client.post(
            f"/v2/models/{MODEL}/infer", content=bomb, headers={"content-encoding": "gzip, gzip"}
        )
        took = time.monotonic() - started
        after = client.post(PREDICT, json={"instances": records[:1]})
    assert refused.status_code == 413, refused.text
    assert "inflates past the limit of 65536 bytes" in refused.json()["error"]
    assert after.status_code == 200
    # Stopped at the limit: nowhere near the gibibyte, in time or in memory.
    assert took < 2, took
    assert process.memory_info().rss - resident_before < 32 << 20


@pytest.mark.parametrize(
    ("encoding", "body", "status", "message"),
    [
        ("br", b"\x0b\x02\x80{}\x03", 415, "Content-Encoding 'br' is not supported"),
        ("gzip", b"not gzip at all", 400, "the body is not valid gzip data"),
        ("deflate", zlib.compress(b'{"instances": []}')[:-3], 400, "ends before its compressed"),
        ("deflate", zlib.compress(b"{}") + b"junk", 400, "bytes after its compressed data"),
        ("gzip", gzip.compress(b"{}") + b"junk", 400, "not valid gzip data"),
    ],
)
def test_a_body_that_does_not_decode_is_refused_naming_why(
    server: ServerProcess, encoding: str, body: bytes, status: int, message: str
) -> None:
    with httpx.Client(base_url=server.url) as client:
        answer = client.post(PREDICT, content=body, headers={"content-encoding": encoding})
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_large_answers_are_gzipped_for_clients_that_accept_it_and_small_ones_never(
    server: ServerProcess, golden: tuple[list[dict[str, Any]], np.ndarray]
) -> None:
    _, rows = golden

    def ask(count: int, accept: str) -> httpx.Response:
        x = np.resize(rows, (count, rows.shape[1]))
        tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
        tensor["parameters"] = {"binary_data_size": x.nbytes}
        header = orjson.dumps({"inputs": [tensor]})
        headers = {
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(len(header)),
            "accept-encoding": accept,
        }
        with httpx.Client(base_url=server.url) as client:
            return client.post(
                f"/v2/models/{MODEL}/infer", content=header + x.tobytes(), headers=headers
            )

    large, small, declined = ask(400, "gzip"), ask(2, "gzip"), ask(400, "gzip;q=0, identity")
    assert large.status_code == 200, large.text
    assert large.headers["content-encoding"] == "gzip"
    assert large.headers["vary"] == "accept-encoding"
    # httpx inflated it: the outputs are all there, and far smaller on the wire.
    assert large.json()["outputs"][0]["shape"][0] == 400
    assert int(large.headers["content-length"]) < len(large.content) / 2
    assert small.status_code == declined.status_code == 200
    assert "content-encoding" not in small.headers
    assert "content-encoding" not in declined.headers
    assert declined.json() == large.json()
