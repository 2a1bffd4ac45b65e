"""A remote candidate's answer is read only when the mirror decodes it, and read strictly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import orjson
import pytest

from keel.settings import ShadowSettings
from keel.shadow.candidates import CandidateFailed, Decode, RemoteCandidate

INPUTS = {"features": np.array([[1.0, 2.0]], dtype=np.float32)}


@asynccontextmanager
async def answering(body: bytes) -> AsyncIterator[str]:
    """A loopback HTTP server that answers every request with ``body``; its model URL."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v2/models/candidate"


def test_an_answer_is_decoded_into_the_outputs_it_names() -> None:
    answer = {
        "model_version": "7",
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.25, 0.75]},
        ],
    }

    async def call() -> tuple[RemoteCandidate, dict[str, np.ndarray]]:
        async with answering(orjson.dumps(answer)) as url:
            candidate = RemoteCandidate(url, ShadowSettings())
            decode = await candidate.call(INPUTS, timeout_s=5.0)
            await candidate.close()
            return candidate, decode()

    candidate, outputs = asyncio.run(call())
    assert outputs["label"].dtype == np.int64
    assert outputs["label"].tolist() == [1]
    assert outputs["probabilities"].dtype == np.float32
    assert outputs["probabilities"].shape == (1, 2)
    assert candidate.version == "7"


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"outputs": [{"name": "label"}]}', b'{"outputs": [{"name": "x", '
     b'"datatype": "FP32", "shape": [3], "data": [1, 2]}]}'],
)  # fmt: skip
def test_an_unreadable_answer_fails_when_decoded_not_when_it_arrives(body: bytes) -> None:
    async def call() -> Decode:
        async with answering(body) as url:
            candidate = RemoteCandidate(url, ShadowSettings())
            decode = await candidate.call(INPUTS, timeout_s=5.0)
            await candidate.close()
            return decode

    decode = asyncio.run(call())
    with pytest.raises(CandidateFailed, match="unreadable infer response"):
        decode()
