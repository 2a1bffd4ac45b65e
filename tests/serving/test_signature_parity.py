"""One signature on every input path: v2 JSON, v2 binary and records reach the same verdict.

Real models (``parity_models``: an sklearn Pipeline with a ColumnTransformer
and a OneHotEncoder, exported with skl2onnx, with and without a string input)
are served in-process by keel's own app; requests go through
``InferenceFront.answer``, the code keel's HTTP server calls. For any input
tensors a client could send, the records they stand for (``records_of``) are
sent to the records API too: every path accepts exactly when the others do,
the model is handed identical arrays, and a refusal names the tensor, row,
feature and rule. ``loans-numeric`` has only numeric inputs, so its v2
requests take the accept-only fast path whenever it can vouch for them.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from parity_models import LOANS, LOANS_NUMERIC, NUMERIC_SIGNATURE, SIGNATURE, publish_loans

from keel.registry import Registry
from keel.runtimes import TensorSpec
from keel.serving.model_manager import ModelManager
from keel.serving.protocols import datatype_of
from keel.serving.protocols.paths import match
from keel.serving.tensor_contract import TensorContract, build_contract
from keel.serving.v2_fast_path import build_fast_path
from keel.settings import Settings
from keel.signature import Signature
from keel.web.app import create_app
from keel.web.inference_front import InferenceFront
from signature.strategies import misencoded, records_of, tensors

V2_PATH = f"/v2/models/{LOANS}/infer"
RECORDS_PATH = f"/v1/models/{LOANS}/predict"
SIGNATURES = {LOANS: SIGNATURE, LOANS_NUMERIC: NUMERIC_SIGNATURE}


@dataclass
class Answer:
    """One reply: its status, its JSON body, and what the model was handed for it."""

    status: int
    body: dict[str, Any]
    model_inputs: dict[str, np.ndarray] | None


@dataclass
class LoansServer:
    """keel's app serving the parity models in-process, with what each model is handed."""

    front: InferenceFront
    loop: asyncio.AbstractEventLoop
    handed: list[dict[str, np.ndarray]] = field(default_factory=list)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]
        route = match(path)
        assert route is not None
        self.handed.clear()
        reply = self.loop.run_until_complete(self.front.answer(route, "POST", raw, body))
        assert reply is not None
        # Every output is asked for as JSON (``v2_body``), so every answer is one document.
        document = orjson.loads(reply.body)
        return Answer(reply.status, document, self.handed[0] if self.handed else None)


@pytest.fixture(scope="module")
def loans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoansServer]:
    scratch = tmp_path_factory.mktemp("loans")
    registry = scratch / "registry"
    for name in SIGNATURES:
        publish_loans(registry, scratch, name)
    base = Settings(registry=str(registry))
    server = base.server.model_copy(update={"watch_interval_s": 0})
    config = base.model_copy(update={"server": server})
    refs = [f"{name}@production" for name in SIGNATURES]
    loop = asyncio.new_event_loop()
    with ThreadPoolExecutor(2, thread_name_prefix="keel-infer") as executor:
        manager = ModelManager(Registry(registry), config, executor)
        front = create_app(manager, config, refs)
        loop.run_until_complete(manager.start(refs))
        served = LoansServer(front, loop)
        for name in SIGNATURES:
            _record_inputs(manager.find(name).require_batcher(), served.handed)
        try:
            yield served
        finally:
            loop.run_until_complete(manager.close())
            loop.close()


def _record_inputs(batcher: Any, handed: list[dict[str, np.ndarray]]) -> None:
    """Keep a copy of every input the batcher is handed: what the model sees."""
    submit = batcher.submit

    async def recorded(
        inputs: dict[str, np.ndarray], deadline: float | None = None, span: Any = None
    ) -> Any:
        handed.append({name: np.array(array) for name, array in inputs.items()})
        return await submit(inputs, deadline, span)

    batcher.submit = recorded


def v2_body(arrays: dict[str, np.ndarray], binary: bool) -> tuple[bytes, dict[str, str]]:
    """The request Triton's own client library writes for these tensors."""
    inputs = []
    for name, array in arrays.items():
        sent = triton.InferInput(name, list(array.shape), datatype_of(array.dtype))
        sent.set_data_from_numpy(array, binary_data=binary)
        inputs.append(sent)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False)]
    body, length = triton.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    headers = {"content-type": "application/json"}
    if length is not None:
        headers["inference-header-content-length"] = str(length)
    return bytes(body), headers


def records_body(records: list[dict[str, Any]]) -> bytes:
    # Python's json writes NaN and Infinity as the literals the records API reads.
    return json.dumps({"instances": records}).encode()


def _finite(arrays: dict[str, np.ndarray]) -> bool:
    return all(a.dtype.kind != "f" or bool(np.isfinite(a).all()) for a in arrays.values())


def _probabilities(answer: Answer, v2: bool) -> np.ndarray:
    if v2:
        (output,) = answer.body["outputs"]
        return np.array(output["data"], dtype=np.float32)
    rows = [p["probabilities"] for p in answer.body["predictions"]]
    return np.array(rows, dtype=np.float32).ravel()


def _refused(answer: Answer) -> set[tuple[int | None, str]]:
    assert answer.status == 422, answer.body
    return {(d["index"], d["field"]) for d in answer.body["details"]}


@pytest.mark.parametrize("model", list(SIGNATURES))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_v2_json_v2_binary_and_records_reach_one_verdict(
    loans: LoansServer, model: str, data: Any
) -> None:
    signature: Signature = SIGNATURES[model]
    arrays = data.draw(tensors(signature, max_rows=3))
    records = records_of(signature, arrays)
    v2_path, records_path = f"/v2/models/{model}/infer", f"/v1/models/{model}/predict"
    by_records = loans.post(records_path, records_body(records), {})
    answers = {"v2 binary": loans.post(v2_path, *v2_body(arrays, binary=True))}
    if _finite(arrays):  # JSON has no NaN or infinity: only binary data carries them
        answers["v2 JSON"] = loans.post(v2_path, *v2_body(arrays, binary=False))
    event("accepted" if by_records.status == 200 else "refused")
    for path, answer in answers.items():
        assert (answer.status == 200) == (by_records.status == 200), (path, answer, by_records)
        if answer.status != 200:
            # Each API names every violation it finds, by row and feature.
            assert _refused(answer) <= _refused(by_records), (path, answer, by_records)
            continue
        assert answer.model_inputs is not None
        assert by_records.model_inputs is not None
        assert answer.model_inputs.keys() == by_records.model_inputs.keys()
        for name, array in by_records.model_inputs.items():
            assert answer.model_inputs[name].dtype == array.dtype, (path, name)
            np.testing.assert_array_equal(answer.model_inputs[name], array)
        np.testing.assert_array_equal(
            _probabilities(answer, v2=True), _probabilities(by_records, v2=False)
        )


@pytest.fixture(scope="module")
def numeric_contract() -> TensorContract:
    specs = tuple(
        TensorSpec(t.name, t.dtype, (None, NUMERIC_SIGNATURE.input_width(t.name)))
        for t in NUMERIC_SIGNATURE.inputs
    )
    return build_contract(NUMERIC_SIGNATURE, specs)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_path_vouches_only_for_what_the_rules_accept(
    numeric_contract: TensorContract, data: Any
) -> None:
    fast = build_fast_path(numeric_contract)
    assert fast is not None
    # Without nulls: the fast path leaves an indicator outside the bounds to the full path.
    arrays = data.draw(tensors(NUMERIC_SIGNATURE, max_rows=6, breaks=misencoded, nulls=False))
    for binary in (False, True):
        if not binary and not _finite(arrays):
            continue
        body, headers = v2_body(arrays, binary)
        length = headers.get("inference-header-content-length")
        decoded = fast.decode(body, None if length is None else int(length))
        event(f"{'binary' if binary else 'JSON'}: {'fast' if decoded else 'full'} path")
        if decoded is None:
            continue
        for name, array in arrays.items():
            # Judged cell by cell, not by the bulk check the fast path shares.
            assert numeric_contract.rules[name].violations(array) == [], (name, array)
        for tensor in decoded.inputs:
            np.testing.assert_array_equal(tensor.data, arrays[tensor.name])


def _one_row(**changes: Any) -> dict[str, np.ndarray]:
    applicant = {"age": 42.0, "income": 52000.0, "owner": 1.0, "plan": [0.0, 1.0, 0.0]}
    applicant.update(changes)
    row = [applicant["age"], applicant["income"], applicant["owner"], *applicant["plan"], 2.0]
    place = np.empty((1, 2), dtype=object)
    place[0] = ["south", "Oslo"]
    return {
        "applicant": np.array([row], dtype=np.float32),
        "history": np.array([[3, 10]], dtype=np.int64),
        "place": place,
    }


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(
    ("changes", "field", "rule", "says"),
    [
        ({"age": 59.5}, "age", "type", "expected an integer, got 59.5"),
        ({"plan": [1.0, 1.0, 0.0]}, "plan", "level", "2 levels are set ('free', 'pro')"),
        ({"plan": [0.0, 0.0, 0.0]}, "plan", "level", "no level is set"),
        ({"owner": 0.5}, "owner", "type", "expected 0 or 1"),
        ({"income": -5.0}, "income", "minimum", "-5.0 is below the minimum 0"),
    ],
)
def test_what_v2_accepted_silently_is_now_422_naming_tensor_row_feature_and_rule(
    loans: LoansServer, binary: bool, changes: dict[str, Any], field: str, rule: str, says: str
) -> None:
    assert loans.post(V2_PATH, *v2_body(_one_row(), binary)).status == 200
    answer = loans.post(V2_PATH, *v2_body(_one_row(**changes), binary))
    assert answer.status == 422, answer.body
    (detail,) = answer.body["details"]
    assert (detail["index"], detail["field"], detail["rule"]) == (0, field, rule)
    assert detail["message"].startswith("input 'applicant' column")
    assert says in detail["message"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_an_ordinal_code_past_the_levels_and_an_unknown_level_are_refused(
    loans: LoansServer, binary: bool
) -> None:
    arrays = _one_row()
    applicant = arrays["applicant"].copy()
    applicant[0, 6] = 4.0  # size: S, M, L, XL are codes 0 to 3
    arrays["applicant"] = applicant
    arrays["place"][0, 0] = "middle"
    answer = loans.post(V2_PATH, *v2_body(arrays, binary))
    assert answer.status == 422, answer.body
    assert [(d["field"], d["rule"]) for d in answer.body["details"]] == [
        ("size", "level"),
        ("region", "level"),
    ]
    assert "input 'place' column 0" in answer.body["details"][1]["message"]


def test_the_missing_indicator_is_how_a_tensor_says_null(loans: LoansServer) -> None:
    arrays = _one_row(income=-1.0)  # income's missing_indicator, outside its bounds
    arrays["history"] = np.array([[3, -1]], dtype=np.int64)  # late's
    answer = loans.post(V2_PATH, *v2_body(arrays, binary=True))
    assert answer.status == 200, answer.body
    records = records_of(SIGNATURE, arrays)
    assert records[0]["income"] is None
    assert records[0]["late"] is None
    by_records = loans.post(RECORDS_PATH, records_body(records), {})
    np.testing.assert_array_equal(
        _probabilities(answer, v2=True), _probabilities(by_records, v2=False)
    )
    assert math.isfinite(float(_probabilities(answer, v2=True)[0]))
