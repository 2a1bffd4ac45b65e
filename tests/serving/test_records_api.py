"""The JSON records API: signature validation answered with 422 naming record, field and rule."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from keel_server import ServerProcess, start_server
from onnx import TensorProto, helper

from keel import publish
from keel.errors import RuntimeFailure
from keel.registry import Registry
from keel.serving import records_api
from keel.signature import Feature, Output, Signature


@pytest.fixture(scope="module")
def record(demo_registry: Path) -> dict[str, Any]:
    return dict(Registry(demo_registry).resolve("breast-cancer@production").golden.inputs[0])


def _predict(server: ServerProcess, body: bytes | dict[str, Any], **headers: str) -> Any:
    with server.client() as client:
        if isinstance(body, bytes):
            headers["content-type"] = "application/json"
            return client.post("/v1/models/breast-cancer/predict", content=body, headers=headers)
        return client.post("/v1/models/breast-cancer/predict", json=body, headers=headers)


def test_valid_records_get_one_prediction_each(
    server: ServerProcess, record: dict[str, Any], demo_registry: Path
) -> None:
    meta = Registry(demo_registry).resolve("breast-cancer@production")
    response = _predict(server, {"instances": [record, record], "id": "r1"})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "r1"
    assert body["model_version"] == meta.version.replace("/", "-")
    assert response.headers["x-keel-model-version"] == body["model_version"]
    assert len(body["predictions"]) == 2
    np.testing.assert_allclose(
        body["predictions"][0]["probabilities"], meta.golden.outputs["probabilities"][0], atol=1e-6
    )


def _field_error(response: Any) -> tuple[int | None, str, str]:
    assert response.status_code == 422, response.text
    detail = response.json()["details"][0]
    return detail["index"], detail["field"], detail["rule"]


@pytest.mark.parametrize(
    ("value", "rule"),
    [(-1.0, "minimum"), ("12.5", "type"), (True, "type"), (None, "null")],
)
def test_each_bad_value_is_422_with_index_field_and_rule(
    server: ServerProcess, record: dict[str, Any], value: Any, rule: str
) -> None:
    bad = {**record, "mean_radius": value}
    assert _field_error(_predict(server, {"instances": [record, bad]})) == (1, "mean_radius", rule)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused(
    server: ServerProcess, record: dict[str, Any], literal: bytes
) -> None:
    # Python's json writes NaN and Infinity literals; keel must not accept them.
    text = json.dumps({"instances": [{**record, "mean_radius": 0.0}]}).encode()
    body = text.replace(b'"mean_radius": 0.0', b'"mean_radius": ' + literal)
    assert _field_error(_predict(server, body)) == (0, "mean_radius", "nan")


def test_missing_and_unknown_fields_are_refused(
    server: ServerProcess, record: dict[str, Any]
) -> None:
    missing = {k: v for k, v in record.items() if k != "worst_area"}
    assert _field_error(_predict(server, {"instances": [missing]})) == (0, "worst_area", "required")
    unknown = {**record, "shoe_size": 42}
    assert _field_error(_predict(server, {"instances": [unknown]})) == (
        0,
        "shoe_size",
        "unknown_field",
    )


def test_every_violation_is_reported(server: ServerProcess, record: dict[str, Any]) -> None:
    bad = {**record, "mean_radius": -1, "mean_texture": "x"}
    response = _predict(server, {"instances": [bad, bad]})
    details = response.json()["details"]
    assert {(d["index"], d["field"]) for d in details} == {
        (0, "mean_radius"), (0, "mean_texture"), (1, "mean_radius"), (1, "mean_texture"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"instances": []}', b'{"instances": {"a": 1}}', b'{"records": []}'],
)
def test_malformed_bodies_are_4xx(server: ServerProcess, body: bytes) -> None:
    response = _predict(server, body)
    assert 400 <= response.status_code < 500
    assert "error" in response.json()


def _with_value(record: dict[str, Any], token: bytes, extra: bytes = b"") -> bytes:
    """A records body whose mean_radius is written as ``token``, as no encoder would."""
    body = json.dumps({"instances": [{**record, "mean_radius": "@"}]}).encode()
    return body.replace(b'"@"', token + extra)


@pytest.mark.parametrize(
    "token",
    [b"1" * 5000, b"-" + b"9" * 4301, b'NaN, "x": ' + b"1" * 5000],
    ids=["5000-digits", "4301-digits-negative", "beside-a-nan"],
)
def test_a_number_past_pythons_4300_digits_is_400_naming_it(
    server: ServerProcess, record: dict[str, Any], token: bytes
) -> None:
    response = _predict(server, _with_value(record, token))
    assert response.status_code == 400, response.text
    assert "a number has more than 4300 digits" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        # 60k: the module's server takes 64 KiB bodies.
        (b"[" * 60_000, "nested too deeply"),
        (b"[" * 60_000 + b"NaN", "nested too deeply"),
        # Python's parser (reached for NaN) runs out of stack, or orjson will not write it.
        (b"NaN " + b"[" * 990 + b"]" * 990, "nested too deeply|Recursion limit"),
    ],
    ids=["60k-brackets", "60k-brackets-and-nan", "990-deep-beside-a-nan"],
)
def test_json_nested_too_deeply_is_400(
    server: ServerProcess, record: dict[str, Any], body: bytes, problem: str
) -> None:
    if body.startswith(b"NaN "):
        body = _with_value(record, b'NaN, "x": ', body[4:])
    response = _predict(server, body)
    assert response.status_code == 400, response.text
    assert re.search(problem, response.json()["error"]), response.text


def test_a_value_nested_a_thousand_deep_is_422_shown_cut_short(
    server: ServerProcess, record: dict[str, Any]
) -> None:
    response = _predict(server, _with_value(record, b"[" * 1000 + b"]" * 1000))
    assert _field_error(response) == (0, "mean_radius", "type")
    assert len(response.content) < 2000


def test_version_header_routes_to_the_candidate(
    server: ServerProcess, record: dict[str, Any], demo_registry: Path
) -> None:
    candidate = Registry(demo_registry).resolve("breast-cancer@candidate").version
    response = _predict(server, {"instances": [record]}, **{"X-Keel-Model-Version": "candidate"})
    assert response.json()["model_version"] == candidate.replace("/", "-")
    unknown = _predict(server, {"instances": [record]}, **{"X-Keel-Model-Version": "staging"})
    assert unknown.status_code == 404


def test_body_over_the_limit_is_413(server: ServerProcess, record: dict[str, Any]) -> None:
    response = _predict(server, {"instances": [record] * 200})
    assert response.status_code == 413
    assert "limit" in response.json()["error"]


def test_openapi_describes_the_records_of_each_model(server: ServerProcess) -> None:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    body = spec["paths"]["/v1/models/breast-cancer/predict"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]["properties"]["instances"]
    assert "mean_radius" in str(schema)
    assert "/v2/models/digits-mlp/infer" in spec["paths"]


def test_a_label_output_answers_its_declared_name_and_keeps_the_index(
    server: ServerProcess, demo_registry: Path
) -> None:
    meta = Registry(demo_registry).resolve("breast-cancer@production")
    labels = next(o.labels for o in meta.signature.outputs if o.name == "label")
    assert labels is not None
    records = meta.golden.inputs[:8]
    expected = meta.golden.outputs["label"][:8]
    assert len(set(expected)) == 2, "the golden rows should hold both classes"
    response = _predict(server, {"instances": records})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == [labels[i] for i in expected]
    assert [p["label_index"] for p in predictions] == expected
    assert set(predictions[0]) == {"label", "label_index", "probabilities"}


def test_v2_answers_the_label_as_its_index(server: ServerProcess, demo_registry: Path) -> None:
    meta = Registry(demo_registry).resolve("breast-cancer@production")
    names = [f.name for f in meta.signature.features]
    rows = [[r[n] for n in names] for r in meta.golden.inputs[:8]]
    body = {"inputs": [{"name": "input", "shape": [8, len(names)], "datatype": "FP32",
                        "data": [v for row in rows for v in row]}]}  # fmt: skip
    with server.client() as client:
        response = client.post("/v2/models/breast-cancer/infer", json=body)
    assert response.status_code == 200, response.text
    label = next(o for o in response.json()["outputs"] if o["name"] == "label")
    assert label["datatype"] == "INT64"
    assert label["data"] == meta.golden.outputs["label"][:8]


def test_a_label_index_past_the_declared_labels_is_a_500_logged_with_the_output(
    tmp_path: Path, stop_later: Any
) -> None:
    """The argmax of three scores, declared with two labels: publish's golden rows stay in range."""
    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["input"], ["label"], axis=1, keepdims=0)],
        "argmax",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])],
    )
    model = tmp_path / "argmax.onnx"
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.write_bytes(onnx_model.SerializeToString())
    signature = Signature(
        features=[Feature(name=f"s{i}", dtype="float") for i in range(3)],
        outputs=[
            Output(name="label", dtype="int64", shape=[None], kind="label", labels=["a", "b"])
        ],
    )
    golden = [{"s0": 1.0, "s1": 0.0, "s2": 0.0}, {"s0": 0.0, "s1": 1.0, "s2": 0.0}]
    registry = tmp_path / "registry"
    publish(model, name="argmax", signature=signature, registry=registry, golden=golden,
            alias="production", source_dir=tmp_path, allow_untracked=True)  # fmt: skip
    server = start_server(registry, ("argmax@production",), tmp_path / "server.log")
    stop_later(server)
    server.wait_ready()
    with server.client() as client:
        ok = client.post("/v1/models/argmax/predict", json={"instances": golden})
        past = client.post(
            "/v1/models/argmax/predict", json={"instances": [{"s0": 0.0, "s1": 0.0, "s2": 1.0}]}
        )
    assert ok.status_code == 200, ok.text
    assert ok.json()["predictions"] == [
        {"label": "a", "label_index": 0},
        {"label": "b", "label_index": 1},
    ]
    assert past.status_code == 500
    assert "output 'label' answered label index 2, but the signature declares 2 labels" in (
        server.log.read_text()
    )


def test_label_names_keep_the_shape_of_an_output_with_several_labels_a_row() -> None:
    signature = Signature(
        features=[Feature(name="x", dtype="float")],
        outputs=[
            Output(name="top", dtype="int64", shape=[None, 2], kind="label", labels=["a", "b", "c"])
        ],
    )
    plan = records_api._plan(signature)
    rows = records_api._predictions(plan, {"top": np.array([[2, 0], [1, 2]])})
    assert rows == [
        {"top": ["c", "a"], "top_index": [2, 0]},
        {"top": ["b", "c"], "top_index": [1, 2]},
    ]
    one = records_api._predictions(plan, {"top": np.array([[1, 1]])})
    assert one == [{"top": ["b", "b"], "top_index": [1, 1]}]
    # A negative index names no label either: never labels[-1].
    with pytest.raises(
        RuntimeFailure, match="answered label index -1, but the signature declares 3"
    ):
        records_api._predictions(plan, {"top": np.array([[-1, 0]])})
