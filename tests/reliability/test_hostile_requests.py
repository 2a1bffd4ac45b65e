"""Hostile requests against a real ``keel serve``: property-based fuzzing of both APIs.

Every answer is a 4xx whose JSON body names what was wrong, never a 5xx or a hang,
and afterwards the server gives the known requests exactly the answers it gave before.
``RELIABILITY_FUZZ_EXAMPLES`` sets how many requests each property tries (see
docs/reliability.md for the full-length run).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from figures import Figures
from hostile_records import records_requests
from hostile_routes import route_requests
from hostile_v2 import v2_binary_requests, v2_json_requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from refusals import CLIENT_TIMEOUT_S, SECTION, HostileRequest, check_answer, send
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance
from served_models import KnownAnswers, ServedModel, json_body, read_served_models

from serving.keel_server import DEMO_REFS, ServerProcess, start_server

pytestmark = pytest.mark.integration

MAX_BODY_BYTES = 16 * 1024 * 1024
# A deadline this short is the client's choice: 504 is the documented answer to it.
SHORT_DEADLINE_MS = 1000.0


@pytest.fixture(scope="module")
def fuzz_server(
    demo_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The demo models served with the default limits a deployment starts from."""
    log = tmp_path_factory.mktemp("fuzzed-server") / "server.log"
    running = start_server(demo_registry, DEMO_REFS, log, KEEL_SERVER__WATCH_INTERVAL_S="0")
    running.wait_ready()
    yield running
    assert running.stop() in (0, -signal.SIGTERM), log.read_text()


@pytest.fixture(scope="module")
def client(fuzz_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server.url, timeout=CLIENT_TIMEOUT_S) as session:
        yield session


@pytest.fixture(scope="module")
def served(client: httpx.Client) -> list[ServedModel]:
    models = read_served_models(client)
    assert {m.name for m in models} == {ref.split("@")[0] for ref in DEMO_REFS}
    return models


@pytest.fixture(scope="module")
def known_answers(client: httpx.Client, served: list[ServedModel]) -> KnownAnswers:
    """What well-formed requests get from the fresh server, before any hostile one."""
    return KnownAnswers.take(client, served)


@pytest.fixture
def still_serving(
    fuzz_server: ServerProcess, client: httpx.Client, known_answers: KnownAnswers
) -> Iterator[None]:
    """After the test the process lives, answers as it did, and logged no unexpected error."""
    start = fuzz_server.log.stat().st_size
    yield
    assert fuzz_server.process.poll() is None, fuzz_server.log.read_text()
    known_answers.check(client)
    logged = fuzz_server.log.read_bytes()[start:].decode(errors="replace")
    assert "Traceback" not in logged, logged
    assert "unexpected error" not in logged, logged


def fuzz(
    examples: int,
    suppress: tuple[HealthCheck, ...] = (HealthCheck.too_slow, HealthCheck.data_too_large),
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(max_examples=examples, deadline=None, suppress_health_check=suppress)


def each_model(
    requests: Callable[[ServedModel], st.SearchStrategy[HostileRequest]],
) -> Callable[[list[ServedModel]], st.SearchStrategy[HostileRequest]]:
    return lambda served: st.sampled_from(served).flatmap(requests)


# Each property's strategy, and how many times RELIABILITY_FUZZ_EXAMPLES requests it tries
# (more where there are more mutations to meet).
PROPERTIES = {
    "v2 JSON bodies that break the protocol": (each_model(v2_json_requests), 4),
    "v2 binary bodies whose lengths lie": (each_model(v2_binary_requests), 2),
    "records that break the signature": (each_model(records_requests), 3),
    "unknown models, versions and path tricks": (route_requests, 2),
}


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize("kind", PROPERTIES)
def test_hostile_requests_get_a_useful_4xx_never_a_5xx_or_a_hang(
    client: httpx.Client,
    served: list[ServedModel],
    figures: Figures,
    fuzz_examples: int,
    kind: str,
) -> None:
    requests, weight = PROPERTIES[kind]

    @fuzz(weight * fuzz_examples)
    @given(request=requests(served))
    def each(request: HostileRequest) -> None:
        send(client, request, figures)

    each()


@pytest.mark.usefixtures("still_serving")
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_spec(
    fuzz_server: ServerProcess, figures: Figures, fuzz_examples: int
) -> None:
    """Schema-valid and schema-violating requests generated from keel's own OpenAPI document."""
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [o.label for o in operations]
    for operation in operations:
        # Only bodies can be made to violate the spec; the other parameters are free strings.
        modes = [GenerationMode.POSITIVE] + (
            [GenerationMode.NEGATIVE] if len(operation.body) else []
        )
        for mode in modes:
            _fuzz_operation(operation, mode, figures, max(3, fuzz_examples // 4))


def _fuzz_operation(operation: Any, mode: GenerationMode, figures: Figures, examples: int) -> None:
    case_name = f"schemathesis: {mode.value} cases from the OpenAPI document"
    # A JSON Schema cannot say that shape and data agree or which input names a model
    # has, so a schema-valid infer body is not a request the model must accept.
    excluded = [not_a_server_error]
    if operation.path.endswith("/infer"):
        excluded.append(positive_data_acceptance)

    # Generated from the document's schemas, so their size is the document's doing.
    @fuzz(examples, suppress=tuple(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def each(case: Any) -> None:
        response = case.call(timeout=CLIENT_TIMEOUT_S)
        status = response.status_code
        deadline_passed = status == 504 and _short_deadline(case)
        figures.add(
            SECTION,
            case_name,
            tried=1,
            refused=int(400 <= status < 500),
            accepted=int(200 <= status < 300),
            deadline_504=int(deadline_passed),
            server_errors=int(status >= 500 and not deadline_passed),
        )
        assert status < 500 or deadline_passed, f"{operation.label}: {status} {response.text}"
        case.validate_response(response, excluded_checks=excluded)

    each()


def _short_deadline(case: Any) -> bool:
    raw = (case.headers or {}).get("X-Keel-Deadline-Ms")
    try:
        return raw is not None and 0 < float(raw) < SHORT_DEADLINE_MS
    except ValueError:
        return False


@pytest.mark.usefixtures("still_serving")
def test_a_body_over_the_limit_is_refused_with_413_however_it_is_sent(
    client: httpx.Client, served: list[ServedModel], figures: Figures
) -> None:
    model = served[0]
    declared = b'{"instances":[' + b"0," * (MAX_BODY_BYTES // 2) + b"0]}"

    def streamed() -> Iterator[bytes]:
        for _ in range(MAX_BODY_BYTES // (1 << 20) + 1):
            yield b" " * (1 << 20)

    for body in (declared, streamed()):
        response = client.post(model.predict_path, content=body)
        request = HostileRequest(
            "huge arrays: bodies over the size limit",
            model.predict_path,
            mentions=("limit",),
        )
        figures.add(SECTION, request.case, tried=1, refused=int(response.status_code == 413))
        assert response.status_code == 413, response.text
        check_answer(response, request)


@pytest.mark.usefixtures("still_serving")
def test_a_flood_of_violations_gets_a_bounded_answer_quickly(
    client: httpx.Client, served: list[ServedModel], figures: Figures
) -> None:
    """20,000 records with every field NaN: the 422 lists a bounded number of violations.

    Before the cap in the record validator, this 3 MB request took 13 s and answered 76 MB.
    """
    model = next(m for m in served if not m.integer_features)
    record = json.dumps(model.record()).replace("0.0", "NaN")
    body = ('{"instances":[' + ",".join([record] * 20_000) + "]}").encode()
    started = time.monotonic()
    response = client.post(model.predict_path, content=body)
    elapsed = time.monotonic() - started
    figures.add(SECTION, "records: a flood of violations in one request", tried=1, refused=1)
    assert response.status_code == 422, response.text[:500]
    details = response.json()["details"]
    assert 0 < len(details) <= 100
    assert {d["rule"] for d in details} == {"nan"}
    assert len(response.content) < 64 * 1024
    assert elapsed < 5, f"{elapsed:.1f} s"


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize("where", ["top level", "record"])
def test_a_lone_surrogate_in_a_field_name_is_refused_not_a_crash(
    client: httpx.Client, served: list[ServedModel], figures: Figures, where: str
) -> None:
    """Python's json (the records API's fallback for NaN) lets a lone surrogate through; the
    error answer naming it used to fail to encode (500). Now the body itself is refused."""
    model = served[0]
    record: dict[str, Any] = model.record()
    document: dict[str, Any] = {"instances": [record]}
    (document if where == "top level" else record)["\ud800"] = 1
    request = HostileRequest(
        "records: lone surrogates in field names",
        model.predict_path,
        json_body(document),
        mentions=("surrogate",),
        statuses=frozenset({400}),
    )
    send(client, request, figures)


def test_a_lone_surrogate_in_a_records_id_is_refused(
    client: httpx.Client, served: list[ServedModel]
) -> None:
    model = served[0]
    body = json_body({"instances": [model.record()], "id": "@"}).replace(b'"@"', b'"\\ud800"')
    response = client.post(model.predict_path, content=body)
    assert 400 <= response.status_code < 500, response.text


def test_a_request_with_more_rows_than_the_queue_holds_is_refused_as_too_large(
    client: httpx.Client, served: list[ServedModel]
) -> None:
    model = served[0]
    response = client.post(model.infer_path, content=json_body({"inputs": [model.tensor(2049)]}))
    assert response.status_code == 413, response.text
