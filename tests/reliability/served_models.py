"""The models a fuzzed server serves, as fuzzers need them, and the answers it must keep giving."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import httpx

BINARY_HEADER = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class ServedModel:
    """One served model: its one input tensor and its record fields, read from the server."""

    name: str
    input_name: str
    datatype: str
    width: int
    features: tuple[str, ...]
    outputs: tuple[str, ...]
    integer_features: frozenset[str]
    nullable: frozenset[str]

    @property
    def infer_path(self) -> str:
        return f"/v2/models/{self.name}/infer"

    @property
    def predict_path(self) -> str:
        return f"/v1/models/{self.name}/predict"

    def record(self) -> dict[str, Any]:
        """A valid record: every feature at zero, which every demo feature allows."""
        return {f: 0 if f in self.integer_features else 0.0 for f in self.features}

    def tensor(self, rows: int) -> dict[str, Any]:
        """A valid JSON input tensor of ``rows`` rows of zeros."""
        return {
            "name": self.input_name,
            "datatype": self.datatype,
            "shape": [rows, self.width],
            "data": [0.0] * (rows * self.width),
        }

    def binary_request(self, rows: int) -> tuple[dict[str, Any], bytes]:
        """A valid binary request: its JSON header (as a document) and its tensor bytes."""
        # Whole numbers where the signature declares an int feature, as a valid tensor holds.
        row = [0.0 if f in self.integer_features else 0.5 for f in self.features]
        raw = struct.pack(f"<{rows * self.width}f", *(row * rows))
        header = {
            "inputs": [
                {
                    "name": self.input_name,
                    "datatype": self.datatype,
                    "shape": [rows, self.width],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
        return header, raw


def read_served_models(client: httpx.Client) -> list[ServedModel]:
    """Every model the server serves, from its model metadata and its OpenAPI document."""
    spec = client.get("/openapi.json").json()
    models = []
    for path, operations in spec["paths"].items():
        if not (path.startswith("/v1/models/") and path.endswith("/predict")):
            continue
        name = path.split("/")[3]
        if "{" in name:
            continue
        body = operations["post"]["requestBody"]["content"]["application/json"]["schema"]
        record = body["properties"]["instances"]["items"]
        metadata = client.get(f"/v2/models/{name}").json()
        (tensor,) = metadata["inputs"]
        properties = record["properties"]
        models.append(
            ServedModel(
                name=name,
                input_name=tensor["name"],
                datatype=tensor["datatype"],
                width=tensor["shape"][1],
                features=tuple(f for f in properties if not f.startswith("@")),
                outputs=tuple(output["name"] for output in metadata["outputs"]),
                integer_features=frozenset(
                    f for f, schema in properties.items() if schema.get("type") == "integer"
                ),
                nullable=frozenset(properties) - frozenset(record.get("required", ())),
            )
        )
    return models


def json_body(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True)
class KnownAnswers:
    """Well-formed requests and what the server answered them when it was fresh."""

    requests: tuple[tuple[str, bytes, dict[str, str]], ...]
    answers: tuple[bytes, ...]

    @classmethod
    def take(cls, client: httpx.Client, models: list[ServedModel]) -> KnownAnswers:
        requests = []
        for model in models:
            header, raw = model.binary_request(3)
            encoded = json_body(header)
            requests += [
                (model.predict_path, json_body({"instances": [model.record()] * 2}), {}),
                (model.infer_path, json_body({"inputs": [model.tensor(2)]}), {}),
                (model.infer_path, encoded + raw, {BINARY_HEADER: str(len(encoded))}),
            ]
        answers = tuple(_answer(client, *request) for request in requests)
        return cls(tuple(requests), answers)

    def check(self, client: httpx.Client) -> None:
        """Every known request still gets exactly the answer it got at the start."""
        for request, expected in zip(self.requests, self.answers, strict=True):
            assert _answer(client, *request) == expected, f"{request[0]} answers differently now"


def _answer(client: httpx.Client, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
    return response.content
