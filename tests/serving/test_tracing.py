"""Traces of a real ``keel serve``, received over OTLP (http/protobuf and gRPC).

Every span is read back as a collector receives it (``otlp_receiver``): the
request's spans in the caller's trace, its batch linked both ways, a shed
request's span marked as an error, a shadow call in a trace of its own linked to
its request, the sampler's verdicts, and the counts /metrics keeps.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from keel_server import ServerProcess, metric_sum, start_server
from otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from test_metric_contract import exported_families

from keel.registry import Registry
from metric_contract import DECLARED_METRICS, TRACE_METRICS
from prometheus_server import PrometheusServer

MODEL = "breast-cancer"
INFER = f"/v2/models/{MODEL}/infer"
V2_BODY = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [0.5] * 30}]}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SERVER_KIND = 2  # SPAN_KIND_SERVER
CLIENT_KIND = 3  # SPAN_KIND_CLIENT
# Sent within a tenth of a second, so a test waits for little.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}


def traceparent(trace_id: str = TRACE_ID, sampled: bool = True) -> str:
    return f"00-{trace_id}-{PARENT_ID}-{'01' if sampled else '00'}"


def start_traced(
    registry: Path, log: Path, receiver: OtlpReceiver, *args: str, **env: str
) -> ServerProcess:
    server = start_server(
        registry, (f"{MODEL}@production",), log, args,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint, **{**FAST_EXPORT, **env},
    )  # fmt: skip
    server.wait_ready()
    return server


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as listening:
        yield listening


@pytest.fixture(scope="module")
def traced_server(
    demo_registry: Path, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_traced(
        demo_registry, tmp_path_factory.mktemp("traced") / "server.log", receiver,
        KEEL_LOG__ACCESS="true", KEEL_LOG__FORMAT="json",
    )  # fmt: skip
    yield server
    assert server.stop() == 0, server.log.read_text()


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.name == name]


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = named(spans, name)
    assert len(found) == 1, (name, spans)
    return found[0]


def request_steps(receiver: OtlpReceiver, trace_id: str, root: str) -> list[ReceivedSpan]:
    """The spans of one traced request, once all five have arrived."""
    wanted = {root, "keel.read_body", "keel.decode", "keel.queue", "keel.encode"}
    spans = receiver.wait_for(
        lambda spans: wanted <= {s.name for s in spans if s.trace_id == trace_id},
        f"the spans of trace {trace_id}",
    )
    return [span for span in spans if span.trace_id == trace_id]


def test_a_request_with_a_traceparent_continues_the_trace_with_each_step_and_its_batch(
    traced_server: ServerProcess, receiver: OtlpReceiver
) -> None:
    trace_id = "1" * 32
    with traced_server.client() as client:
        answer = client.post(INFER, json=V2_BODY, headers={"traceparent": traceparent(trace_id)})
    assert answer.status_code == 200, answer.text
    request_steps(receiver, trace_id, "POST /v2/models/{name}/infer")
    spans = receiver.trace(trace_id)
    request = one(spans, "POST /v2/models/{name}/infer")
    # Continued from the caller: its trace, the caller's span as parent, a server span.
    assert request.parent_id == PARENT_ID
    assert request.kind == SERVER_KIND
    version = answer.headers["x-keel-model-version"]
    assert request.attributes == {
        "http.request.method": "POST",
        "http.route": "/v2/models/{name}/infer",
        "http.response.status_code": 200,
        "keel.endpoint": "v2_infer",
        "keel.model.name": MODEL,
        "keel.model.version": version,
        "keel.rows": 1,
        "keel.outcome": "ok",
    }
    assert not request.failed
    assert request.resource["service.name"] == "keel"
    # The answer names the trace and the request's span.
    assert answer.headers["traceresponse"] == f"00-{trace_id}-{request.span_id}-01"
    steps = [one(spans, name) for name in ("keel.read_body", "keel.decode", "keel.queue")]
    steps.append(one(spans, "keel.encode"))
    for step in steps:
        assert step.parent_id == request.span_id, step
        assert request.start_ns <= step.start_ns <= step.end_ns <= request.end_ns, step
    # In the order a request takes them.
    assert [s.name for s in sorted(steps, key=lambda s: s.start_ns)] == [
        "keel.read_body", "keel.decode", "keel.queue", "keel.encode",
    ]  # fmt: skip
    assert one(spans, "keel.read_body").attributes["http.request.body.size"] > 0
    # The batch: a trace of its own, linked to the request; the queue wait links back.
    queue = one(spans, "keel.queue")
    assert len(queue.links) == 1
    batch_trace, batch_id = queue.links[0]
    assert batch_trace != trace_id
    batch_spans = receiver.wait_for(
        lambda received: any(s.span_id == batch_id for s in received), "the batch span"
    )
    batch = next(s for s in batch_spans if s.span_id == batch_id)
    assert batch.name == "keel.batch"
    assert (trace_id, request.span_id) in batch.links
    assert batch.attributes["keel.batch.rows"] >= 1
    assert batch.attributes["keel.model.name"] == MODEL
    assert batch.start_ns == queue.end_ns
    run = receiver.wait_for(
        lambda received: any(s.parent_id == batch_id for s in received), "the model run"
    )
    model_run = next(s for s in run if s.parent_id == batch_id)
    assert model_run.name == "keel.model_run"
    assert batch.start_ns <= model_run.start_ns <= model_run.end_ns <= batch.end_ns


def test_a_request_without_a_traceparent_starts_a_trace_and_the_access_log_names_it(
    traced_server: ServerProcess, receiver: OtlpReceiver, demo_registry: Path
) -> None:
    golden = Registry(demo_registry).resolve(f"{MODEL}@production").golden.inputs
    records = {"instances": [dict(golden[0])]}
    with traced_server.client() as client:
        answer = client.post(f"/v1/models/{MODEL}/predict", json=records)
    assert answer.status_code == 200, answer.text
    _, trace_id, span_id, flags = answer.headers["traceresponse"].split("-")
    # Sampled; a new trace's id is also marked random (W3C Trace Context level 2).
    assert int(flags, 16) & 1
    spans = request_steps(receiver, trace_id, "POST /v1/models/{name}/predict")
    request = one([s for s in spans if s.trace_id == trace_id], "POST /v1/models/{name}/predict")
    assert request.span_id == span_id
    assert request.parent_id == ""
    assert request.attributes["keel.endpoint"] == "records"
    assert f'"trace_id":"{trace_id}"' in traced_server.log.read_text()


def test_a_client_mistake_is_no_error_on_its_span(
    traced_server: ServerProcess, receiver: OtlpReceiver
) -> None:
    trace_id = "2" * 32
    body = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    with traced_server.client() as client:
        answer = client.post(INFER, json=body, headers={"traceparent": traceparent(trace_id)})
    assert answer.status_code == 422
    spans = receiver.wait_for(
        lambda received: any(s.trace_id == trace_id and s.kind == SERVER_KIND for s in received),
        "the refused request's span",
    )
    request = next(s for s in spans if s.trace_id == trace_id and s.kind == SERVER_KIND)
    assert request.attributes["http.response.status_code"] == 422
    assert request.attributes["keel.outcome"] == "refused"
    assert not request.failed


def test_a_grpc_call_continues_the_trace_in_its_metadata(
    traced_server: ServerProcess, receiver: OtlpReceiver
) -> None:
    trace_id = "3" * 32
    inputs = triton_grpc.InferInput("input", [1, 30], "FP32")
    inputs.set_data_from_numpy(np.full((1, 30), 0.5, dtype=np.float32))
    with closing(triton_grpc.InferenceServerClient(traced_server.grpc_address)) as client:
        client.infer(MODEL, [inputs], headers={"traceparent": traceparent(trace_id)})
    name = "inference.GRPCInferenceService/ModelInfer"
    wanted = {name, "keel.decode", "keel.queue", "keel.encode"}
    spans = receiver.wait_for(
        lambda received: wanted <= {s.name for s in received if s.trace_id == trace_id},
        "the gRPC call's spans",
    )
    call = one([s for s in spans if s.trace_id == trace_id], name)
    assert call.parent_id == PARENT_ID
    assert call.kind == SERVER_KIND
    assert call.attributes["rpc.system"] == "grpc"
    assert call.attributes["rpc.method"] == "ModelInfer"
    assert call.attributes["rpc.grpc.status_code"] == 0
    assert call.attributes["keel.model.name"] == MODEL


def test_a_caller_that_did_not_sample_is_not_traced(
    traced_server: ServerProcess, receiver: OtlpReceiver
) -> None:
    trace_id = "4" * 32
    with traced_server.client() as client:
        answer = client.post(
            INFER, json=V2_BODY, headers={"traceparent": traceparent(trace_id, sampled=False)}
        )
        assert answer.status_code == 200
        assert "traceresponse" not in answer.headers
        # A sampled request after it: once its spans are in, the unsampled one's would be.
        after = "5" * 32
        client.post(INFER, json=V2_BODY, headers={"traceparent": traceparent(after)})
    request_steps(receiver, after, "POST /v2/models/{name}/infer")
    assert receiver.trace(trace_id) == []


@pytest.mark.parametrize(
    "hostile",
    [
        "00-" + "1" * 32 + "-" + "2" * 16 + "-zz",  # the right length, flags not hex
        "x" * 55,
        "00-" + "1" * 32 + "-" + "2" * 16 + "-01" + "0" * 4000,  # long
    ],
)
def test_a_hostile_traceparent_never_fails_its_request(
    traced_server: ServerProcess, hostile: str
) -> None:
    with traced_server.client() as client:
        answer = client.post(INFER, json=V2_BODY, headers={"traceparent": hostile})
    assert answer.status_code == 200, answer.text
    # Ignored, as the W3C propagator ignores it: a trace of the request's own.
    assert answer.headers["traceresponse"].split("-")[1] != "1" * 32


def test_metrics_count_the_spans_sent(traced_server: ServerProcess, receiver: OtlpReceiver) -> None:
    trace_id = "c" * 32
    with traced_server.client() as client:
        client.post(INFER, json=V2_BODY, headers={"traceparent": traceparent(trace_id)})
    request_steps(receiver, trace_id, "POST /v2/models/{name}/infer")
    for _ in range(100):
        if metric_sum(traced_server, "keel_trace_spans_exported_total") >= 5:
            break
        time.sleep(0.05)
    assert metric_sum(traced_server, "keel_trace_spans_exported_total") >= 5
    assert metric_sum(traced_server, "keel_trace_spans_dropped_total") == 0
    with traced_server.client() as client:
        text = client.get("/metrics").text
    exported = {name for name in exported_families(text) if name.startswith("keel_")}
    assert exported == DECLARED_METRICS | TRACE_METRICS


def test_a_shed_request_has_its_span_marked_as_an_error(
    demo_registry: Path, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    server = start_traced(
        demo_registry, tmp_path / "server.log", receiver,
        KEEL_BATCHING__MAX_BATCH_SIZE="1", KEEL_BATCHING__MAX_QUEUE_SIZE="1",
        KEEL_BATCHING__MAX_BATCHES_IN_FLIGHT="1",
    )  # fmt: skip
    try:
        shed: list[str] = []
        for _ in range(10):
            answers = asyncio.run(_concurrently(server.url, 64))
            shed = [a.headers["traceresponse"] for a in answers if a.status_code == 503]
            if shed:
                break
        assert shed, "nothing was shed"
        trace_id = shed[0].split("-")[1]
        spans = receiver.wait_for(
            lambda received: any(s.trace_id == trace_id for s in received), "the shed span"
        )
        request = next(s for s in spans if s.trace_id == trace_id and s.kind == SERVER_KIND)
        assert request.failed
        assert request.attributes["http.response.status_code"] == 503
        assert request.attributes["error.type"] == "503"
        assert request.attributes["keel.outcome"] == "error"
    finally:
        assert server.stop() == 0, server.log.read_text()


async def _concurrently(url: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post(INFER, json=V2_BODY) for _ in range(count)))


def test_a_shadow_call_is_a_trace_of_its_own_linked_to_its_request(
    demo_registry: Path, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    server = start_traced(
        demo_registry, tmp_path / "server.log", receiver,
        "--shadow", f"{MODEL}@candidate", "--log-store", f"sqlite:///{tmp_path / 'log.sqlite'}",
        KEEL_SHADOW__TIMEOUT_MS="5000",
    )  # fmt: skip
    try:
        trace_id = "6" * 32
        shadow = _shadow_span_of_a_traced_request(server, receiver, trace_id)
        assert shadow.trace_id != trace_id
        assert shadow.parent_id == ""
        assert shadow.attributes["keel.shadow.status"] == "ok"
        assert shadow.attributes["keel.model.name"] == MODEL
        assert not shadow.failed
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_a_call_to_a_remote_candidate_carries_its_span_as_the_candidates_parent(
    demo_registry: Path, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    # The candidate is another traced keel serve: its request span must join the shadow
    # call's trace, as the server side of keel's client span.
    candidate = start_server(
        demo_registry, (f"{MODEL}@candidate",), tmp_path / "candidate.log",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint, OTEL_SERVICE_NAME="candidate",
        **FAST_EXPORT,
    )  # fmt: skip
    try:
        candidate.wait_ready()
        server = start_traced(
            demo_registry, tmp_path / "server.log", receiver,
            "--shadow-url", f"{candidate.url}/v2/models/{MODEL}",
            "--log-store", f"sqlite:///{tmp_path / 'log.sqlite'}",
            KEEL_SHADOW__TIMEOUT_MS="5000",
        )  # fmt: skip
        try:
            trace_id = "d" * 32
            shadow = _shadow_span_of_a_traced_request(server, receiver, trace_id)
            assert shadow.kind == CLIENT_KIND
            assert shadow.trace_id != trace_id
            assert shadow.attributes["keel.shadow.status"] == "ok"
            # The candidate's own spans: its request is the shadow span's child, with
            # its steps under it, all in the shadow call's trace.
            remote = request_steps(receiver, shadow.trace_id, "POST /v2/models/{name}/infer")
            served = one(remote, "POST /v2/models/{name}/infer")
            assert served.parent_id == shadow.span_id
            assert served.kind == SERVER_KIND
            assert served.resource["service.name"] == "candidate"
            assert one(remote, "keel.decode").parent_id == served.span_id
        finally:
            assert server.stop() == 0, server.log.read_text()
    finally:
        assert candidate.stop() == 0, candidate.log.read_text()


def _shadow_span_of_a_traced_request(
    server: ServerProcess, receiver: OtlpReceiver, trace_id: str
) -> ReceivedSpan:
    """Once the candidate is ready, a request in trace ``trace_id``; its shadow call's span,
    found by its link to the request's span."""
    _wait_shadow_ready(server)
    with server.client() as client:
        answer = client.post(INFER, json=V2_BODY, headers={"traceparent": traceparent(trace_id)})
    assert answer.status_code == 200
    request = one(
        request_steps(receiver, trace_id, "POST /v2/models/{name}/infer"),
        "POST /v2/models/{name}/infer",
    )
    spans = receiver.wait_for(
        lambda received: any(
            (trace_id, request.span_id) in s.links for s in named(received, "keel.shadow")
        ),
        "the shadow call's span",
    )
    return next(s for s in named(spans, "keel.shadow") if (trace_id, request.span_id) in s.links)


def _wait_shadow_ready(server: ServerProcess) -> None:
    with server.client() as client:
        for _ in range(600):
            answer = client.get(f"/v2/models/{MODEL}/shadow")
            if answer.status_code == 200 and answer.json()["candidate"]["ready"]:
                return
            time.sleep(0.1)
    raise AssertionError("the shadow candidate did not get ready")


def test_traces_go_over_grpc_when_the_protocol_says_so(
    demo_registry: Path, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    server = start_server(
        demo_registry, (f"{MODEL}@production",), tmp_path / "server.log",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.grpc_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc", OTEL_SERVICE_NAME="scoring",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test", **FAST_EXPORT,
    )  # fmt: skip
    try:
        server.wait_ready()
        trace_id = "7" * 32
        with server.client() as client:
            client.post(INFER, json=V2_BODY, headers={"traceparent": traceparent(trace_id)})
        spans = request_steps(receiver, trace_id, "POST /v2/models/{name}/infer")
        request = one([s for s in spans if s.trace_id == trace_id], "POST /v2/models/{name}/infer")
        assert request.resource["service.name"] == "scoring"
        assert request.resource["deployment.environment"] == "test"
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_a_ratio_of_zero_traces_no_new_request_but_continues_sampled_callers(
    demo_registry: Path, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    server = start_traced(
        demo_registry, tmp_path / "server.log", receiver,
        OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0",
    )  # fmt: skip
    try:
        trace_id = "8" * 32
        with server.client() as client:
            unsampled = [client.post(INFER, json=V2_BODY) for _ in range(20)]
            sampled = client.post(
                INFER, json=V2_BODY, headers={"traceparent": traceparent(trace_id)}
            )
        assert all("traceresponse" not in answer.headers for answer in unsampled)
        assert sampled.headers["traceresponse"].split("-")[1] == trace_id
        request_steps(receiver, trace_id, "POST /v2/models/{name}/infer")
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_spans_the_collector_refuses_are_counted_and_requests_still_answered(
    demo_registry: Path, tmp_path: Path
) -> None:
    with otlp_receiver() as refusing:
        refusing.refuse_with = 400
        server = start_traced(demo_registry, tmp_path / "server.log", refusing)
        try:
            with server.client() as client:
                assert {client.post(INFER, json=V2_BODY).status_code for _ in range(20)} == {200}
            # Each request has five spans and its batch two.
            for _ in range(100):
                dropped = metric_sum(
                    server, "keel_trace_spans_dropped_total", reason="export_failed"
                )
                if dropped >= 20 * 5:
                    break
                time.sleep(0.1)
            assert dropped >= 20 * 5
            assert metric_sum(server, "keel_trace_spans_exported_total") == 0
        finally:
            assert server.stop() == 0, server.log.read_text()
    log = server.log.read_text()
    assert log.count("the collector took no spans") == 1, log
    # The exporter's own words on the first failure (why), then nothing more of it.
    exporter_lines = [line for line in log.splitlines() if "opentelemetry.exporter" in line]
    assert 1 <= len(exporter_lines) <= 5, log


def test_the_servers_own_warm_up_requests_are_not_traced(
    demo_registry: Path, tmp_path: Path
) -> None:
    with otlp_receiver() as fresh:
        server = start_traced(demo_registry, tmp_path / "server.log", fresh)
        try:
            time.sleep(1.0)  # ten times the export delay: what it queued has been sent
            assert fresh.spans == []
            with server.client() as client:
                client.post(INFER, json=V2_BODY, headers={"traceparent": traceparent()})
            request_steps(fresh, TRACE_ID, "POST /v2/models/{name}/infer")
        finally:
            assert server.stop() == 0, server.log.read_text()


def test_without_an_endpoint_nothing_is_traced(demo_registry: Path, tmp_path: Path) -> None:
    server = start_server(demo_registry, (f"{MODEL}@production",), tmp_path / "server.log")
    try:
        server.wait_ready()
        with server.client() as client:
            answer = client.post(INFER, json=V2_BODY, headers={"traceparent": traceparent()})
            text = client.get("/metrics").text
        assert answer.status_code == 200
        assert "traceresponse" not in answer.headers
        assert "keel_trace_spans" not in text
    finally:
        assert server.stop() == 0, server.log.read_text()


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("OTEL_TRACES_SAMPLER", "traceid_ratio", "OTEL_TRACES_SAMPLER is 'traceid_ratio'"),
        ("OTEL_TRACES_SAMPLER_ARG", "half", "OTEL_TRACES_SAMPLER_ARG is 'half'"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL is 'http/json'"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "-1", "OTEL_BSP_MAX_QUEUE_SIZE is '-1'"),
        ("OTEL_SDK_DISABLED", "yes", "OTEL_SDK_DISABLED is 'yes'"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", "must be an http:// or https:// URL"),
    ],
)
def test_a_mistake_in_the_otel_variables_stops_keel_serve_naming_it(
    demo_registry: Path, variable: str, value: str, said: str
) -> None:
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        variable: value,
    }
    result = subprocess.run(
        [sys.executable, "-m", "keel", "serve", f"{MODEL}@production",
         "--registry", str(demo_registry)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert said in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_traced_requests_latency_is_its_buckets_exemplar_in_openmetrics(
    traced_server: ServerProcess, receiver: OtlpReceiver
) -> None:
    trace_id = "9" * 32
    with traced_server.client() as client:
        client.post(INFER, json=V2_BODY, headers={"traceparent": traceparent(trace_id)})
        openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        plain = client.get("/metrics")
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    lines = [
        line
        for line in openmetrics.text.splitlines()
        if line.startswith("keel_request_duration_seconds_bucket") and trace_id in line
    ]
    assert len(lines) == 1, openmetrics.text
    assert 'endpoint="v2_infer"' in lines[0]
    assert f'# {{trace_id="{trace_id}"}}' in lines[0]
    assert openmetrics.text.rstrip().endswith("# EOF")
    # The Prometheus text format has no exemplars: a scraper that does not ask gets it.
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert trace_id not in plain.text


def test_prometheus_keeps_the_exemplar_that_leads_from_a_latency_bucket_to_its_trace(
    traced_server: ServerProcess, receiver: OtlpReceiver
) -> None:
    trace_id = "a" * 32
    target = traced_server.url.removeprefix("http://")
    with PrometheusServer([target], features=["exemplar-storage"]) as prometheus:
        prometheus.wait_for_targets_up()
        with traced_server.client() as client:
            answer = client.post(
                INFER, json=V2_BODY, headers={"traceparent": traceparent(trace_id)}
            )
        assert answer.status_code == 200
        deadline = time.monotonic() + 30
        found: list[str] = []
        while not found:
            assert time.monotonic() < deadline, "Prometheus kept no exemplar of the request"
            now = time.time()
            series = prometheus.api(
                "query_exemplars",
                query="keel_request_duration_seconds_bucket",
                start=str(now - 120),
                end=str(now + 10),
            )
            found = [
                exemplar["labels"]["trace_id"]
                for entry in series
                for exemplar in entry["exemplars"]
                if exemplar["labels"].get("trace_id") == trace_id
            ]
            time.sleep(0.5)
    request_steps(receiver, trace_id, "POST /v2/models/{name}/infer")


def test_every_worker_traces_and_the_whole_servers_metrics_keep_the_exemplars(
    demo_registry: Path, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    server = start_traced(demo_registry, tmp_path / "server.log", receiver, "--workers", "2")
    try:
        trace_ids = [f"{k:032x}" for k in range(0xB0, 0xB0 + 20)]
        for trace_id in trace_ids:
            # A connection each, so that the kernel spreads them over the workers.
            with server.client() as client:
                answer = client.post(
                    INFER, json=V2_BODY, headers={"traceparent": traceparent(trace_id)}
                )
            assert answer.status_code == 200
        spans = receiver.wait_for(
            lambda received: (
                {s.trace_id for s in received if s.kind == SERVER_KIND} >= set(trace_ids)
            ),
            "a span of every request",
        )
        workers = {s.resource["keel.worker"] for s in spans if s.trace_id in trace_ids}
        assert workers == {0, 1}
        with server.client() as client:
            text = client.get("/metrics", headers={"Accept": "application/openmetrics-text"}).text
        exemplars = {
            line.split('trace_id="')[1][:32]
            for line in text.splitlines()
            if line.startswith("keel_request_duration_seconds_bucket") and "trace_id" in line
        }
        assert exemplars, text
        assert exemplars <= set(trace_ids), text
    finally:
        assert server.stop() == 0, server.log.read_text()
