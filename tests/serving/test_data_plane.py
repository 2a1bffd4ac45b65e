"""The data plane with no HTTP at all: every protocol's verdicts, and a codec of one's own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from keel_server import DEMO_REFS

from keel.errors import InvalidRequest, ModelNotFound, ProtocolError
from keel.registry import Registry
from keel.serving.batcher import Tensors
from keel.serving.calls import Call
from keel.serving.data_plane import DataPlane, Decoded
from keel.serving.model_manager import ModelManager
from keel.serving.records_api import RECORDS
from keel.serving.served_version import ServedVersion
from keel.serving.v2_infer import V2_INFER
from keel.settings import Settings

MODEL = "breast-cancer"


@dataclass
class Plane:
    plane: DataPlane
    loop: asyncio.AbstractEventLoop
    records: list[dict[str, Any]]

    def infer(self, codec: Any, body: bytes, headers: dict[str, str] | None = None) -> Any:
        version = self.plane.find(MODEL, None, headers or {})
        call = Call(headers or {}, body, time.perf_counter())
        return self.loop.run_until_complete(self.plane.infer(version, codec, call))


@pytest.fixture(scope="module")
def plane(demo_registry: Path) -> Iterator[Plane]:
    base = Settings(registry=str(demo_registry))
    settings = base.model_copy(
        update={"server": base.server.model_copy(update={"watch_interval_s": 0})}
    )
    loop = asyncio.new_event_loop()
    with ThreadPoolExecutor(2) as executor:
        manager = ModelManager(Registry(demo_registry), settings, executor)
        loop.run_until_complete(manager.start(list(DEMO_REFS)))
        golden = Registry(demo_registry).resolve(f"{MODEL}@production").golden
        try:
            plane = DataPlane(manager, settings.server.default_deadline_ms)
            yield Plane(plane, loop, [dict(r) for r in golden.inputs])
        finally:
            loop.run_until_complete(manager.close())
            loop.close()


def _v2_body(rows: list[list[float]]) -> bytes:
    tensor = {"name": "input", "shape": [len(rows), 30], "datatype": "FP32", "data": rows}
    return orjson.dumps({"id": "r1", "inputs": [tensor]})


def test_records_and_v2_give_the_same_outputs_through_the_data_plane(plane: Plane) -> None:
    records = plane.records[:3]
    by_records = orjson.loads(plane.infer(RECORDS, orjson.dumps({"instances": records})).body)
    rows = [[float(v) for v in record.values()] for record in records]
    reply = plane.infer(V2_INFER, _v2_body(rows))
    by_v2 = {o["name"]: o for o in orjson.loads(reply.body)["outputs"]}
    assert reply.status == 200
    assert orjson.loads(reply.body)["id"] == "r1"
    probabilities = [row["probabilities"] for row in by_records["predictions"]]
    np.testing.assert_allclose(
        np.array(by_v2["probabilities"]["data"]).reshape(3, 2), probabilities, rtol=1e-6
    )
    assert [row["label_index"] for row in by_records["predictions"]] == by_v2["label"]["data"]


def test_refusals_are_raised_as_keels_errors_for_the_edge_to_map(plane: Plane) -> None:
    misspelt = {**plane.records[0], "mean_radiuss": 1.0}
    with pytest.raises(InvalidRequest) as refused:
        plane.infer(RECORDS, orjson.dumps({"instances": [misspelt]}))
    assert refused.value.errors[0].rule == "unknown_field"
    with pytest.raises(ProtocolError):
        plane.infer(V2_INFER, b"{not json")
    with pytest.raises(ModelNotFound):
        plane.plane.find("nosuch", None, {})


class _ArrayCodec:
    """A protocol of one's own: a NumPy array in, the probabilities array out."""

    def decode(self, version: ServedVersion, call: Call) -> Decoded:
        rows = np.frombuffer(call.body, dtype=np.float32).reshape(-1, 30)
        contract = version.contract
        assert contract is not None
        inputs = {"input": rows}
        contract.check(inputs)
        return Decoded(inputs, None)

    def encode(self, version: ServedVersion, request: Decoded, outputs: Tensors) -> np.ndarray:
        return outputs["probabilities"]


def test_a_codec_of_ones_own_is_one_more_edge_with_the_same_checks(plane: Plane) -> None:
    rows = np.array([list(r.values()) for r in plane.records[:2]], dtype=np.float32)
    probabilities = plane.infer(_ArrayCodec(), rows.tobytes())
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    # The signature's rules hold on this edge too: a NaN where the signature forbids it.
    rows[1, 0] = np.nan
    with pytest.raises(InvalidRequest):
        plane.infer(_ArrayCodec(), rows.tobytes())


class _RecordingMirror:
    """A shadow of one's own: keeps what the data plane offers it."""

    def __init__(self) -> None:
        self.offers: list[tuple[str, str | None, Tensors]] = []

    def offer(self, primary: ServedVersion, request: Decoded, outputs: Tensors, call: Call) -> None:
        self.offers.append((primary.name, request.request_id, outputs))


def test_every_answered_request_and_no_refused_one_is_offered_to_the_models_mirror(
    plane: Plane,
) -> None:
    mirror = _RecordingMirror()
    mirrored = Plane(
        DataPlane(plane.plane.manager, 1000.0, {MODEL: mirror}), plane.loop, plane.records
    )
    rows = [[float(v) for v in plane.records[0].values()]]
    reply = mirrored.infer(V2_INFER, _v2_body(rows))
    with pytest.raises(ProtocolError):
        mirrored.infer(V2_INFER, b"{not json")
    [(name, request_id, outputs)] = mirror.offers
    assert (name, request_id) == (MODEL, "r1")
    answered = {o["name"]: o["data"] for o in orjson.loads(reply.body)["outputs"]}
    assert outputs["label"].tolist() == answered["label"]


def test_the_deadline_header_must_be_a_positive_number_of_milliseconds(plane: Plane) -> None:
    body = orjson.dumps({"instances": plane.records[:1]})
    for bad in ("soon", "0", "-5"):
        with pytest.raises(ProtocolError, match="x-keel-deadline-ms"):
            plane.infer(RECORDS, body, {"x-keel-deadline-ms": bad})
    assert plane.plane.deadline_s({"x-keel-deadline-ms": "250"}) == 0.25
    assert plane.plane.deadline_s({}) == plane.plane.default_deadline_s
