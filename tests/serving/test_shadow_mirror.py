"""Shadow mode end to end: real servers mirror real traffic to real candidates, and log both.

The candidate's failures are made real by a proxy in front of a real keel
server (``fault_proxy``): it answers 500, answers late, never answers or drops
the connection. Whatever it does, the primary's answers must be exactly those
of a server with no shadow, and every outcome must be counted and logged.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from fault_proxy import CLOSE, DELAY, ERROR, FORWARD, HANG, FaultProxy, fault_proxy
from keel_server import ServerProcess, start_server
from test_metric_contract import exported_families

from keel.logstore import CandidateStatus, PredictionRecord
from keel.logstore.opening import open_log_store
from metric_contract import DECLARED_METRICS, SHADOW_METRICS

MODEL = "breast-cancer"
PREDICT = f"/v1/models/{MODEL}/predict"
SHADOW = f"/v2/models/{MODEL}/shadow"
VERSION_HEADER = "x-keel-model-version"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def shadow_state(server: ServerProcess) -> dict[str, Any]:
    with server.client() as client:
        answer = client.get(SHADOW)
        assert answer.status_code == 200, answer.text
        state: dict[str, Any] = answer.json()
        return state


def start_shadowed(
    registry: Path,
    log_url: str,
    log: Path,
    stop_later: Callable[[ServerProcess], None],
    **env: str,
) -> ServerProcess:
    """``keel serve MODEL@production --shadow MODEL@candidate`` logging to ``log_url``, ready.

    The alias watcher is off and the candidate's timeout generous unless ``env`` says
    otherwise: these tests are about what is logged, not about a slow machine.
    """
    server = start_server(
        registry, (f"{MODEL}@production",), log,
        args=("--shadow", f"{MODEL}@candidate", "--log-store", log_url),
        **{"KEEL_SERVER__WATCH_INTERVAL_S": "0", "KEEL_SHADOW__TIMEOUT_MS": "5000", **env},
    )  # fmt: skip
    stop_later(server)
    server.wait_ready()
    wait_shadow_ready(server)
    return server


def start_behind_proxy(
    registry: Path,
    proxy: FaultProxy,
    candidate: str,
    tmp_path: Path,
    stop_later: Callable[[ServerProcess], None],
    **env: str,
) -> ServerProcess:
    """A server mirroring to ``candidate`` of the keel server behind ``proxy``, ready.

    The candidate's timeout is 150 ms and one call runs at a time; the log is
    ``predictions.sqlite`` in ``tmp_path``.
    """
    server = start_server(
        registry, (f"{MODEL}@production",), tmp_path / "server.log",
        args=("--shadow-url", f"{proxy.url}/v2/models/{MODEL}/versions/{candidate}",
              "--log-store", f"sqlite:///{tmp_path / 'predictions.sqlite'}"),
        KEEL_SERVER__WATCH_INTERVAL_S="0", KEEL_SHADOW__TIMEOUT_MS="150",
        KEEL_SHADOW__CONCURRENCY="1", **env,
    )  # fmt: skip
    stop_later(server)
    server.wait_ready()
    wait_shadow_ready(server)
    return server


def wait_shadow_ready(server: ServerProcess) -> None:
    def ready() -> bool:
        with server.client() as client:
            answer = client.get(SHADOW)
        return answer.status_code == 200 and bool(answer.json()["candidate"]["ready"])

    wait_for(ready, "the shadow candidate to be ready", timeout=60)


def wait_counted(server: ServerProcess, total: int) -> dict[str, int]:
    """The candidate outcomes once ``total`` mirrored requests have one each."""
    counts: dict[str, int] = {}

    def settled() -> bool:
        nonlocal counts
        counts = shadow_state(server)["requests"]
        return sum(counts.values()) >= total

    wait_for(settled, f"{total} shadow outcomes")
    return counts


def predictions(server: ServerProcess, records: list[dict[str, Any]], **headers: str) -> Any:
    with server.client() as client:
        answer = client.post(PREDICT, json={"instances": records}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"], answer.headers[VERSION_HEADER]


def read_log(url: str) -> list[PredictionRecord]:
    store = open_log_store(url)
    try:
        return store.read(MODEL)
    finally:
        store.close()


@pytest.fixture(scope="module")
def reference(server: ServerProcess, held_out: list[dict[str, Any]]) -> dict[str, Any]:
    """What production and the candidate answer on their own, from a server with no shadow."""
    batches = [held_out[i : i + 10] for i in range(0, 60, 10)]
    primary = [predictions(server, batch) for batch in batches]
    candidate = [predictions(server, batch, **{VERSION_HEADER: "candidate"}) for batch in batches]
    return {
        "batches": batches,
        "primary": [p for p, _ in primary],
        "production_version": primary[0][1],
        "candidate": [p for p, _ in candidate],
        "candidate_version": candidate[0][1],
    }


def test_in_process_candidate_sees_every_request_and_both_answers_are_logged(
    demo_registry: Path,
    reference: dict[str, Any],
    tmp_path: Path,
    stop_later: Callable[[ServerProcess], None],
) -> None:
    log_url = f"sqlite:///{tmp_path / 'predictions.sqlite'}"
    shadowed = start_shadowed(demo_registry, log_url, tmp_path / "server.log", stop_later)
    assert shadow_state(shadowed)["candidate"]["version"] == reference["candidate_version"]

    for batch, expected in zip(reference["batches"], reference["primary"], strict=True):
        answered, version = predictions(shadowed, batch)
        assert answered == expected
        assert version == reference["production_version"]
    # The Open Inference Protocol path mirrors too, with its request id kept.
    rows = [[float(v) for v in r.values()] for r in reference["batches"][0][:3]]
    with shadowed.client() as client:
        metadata = client.get(f"/v2/models/{MODEL}").json()
        tensor = metadata["inputs"][0]
        answer = client.post(
            f"/v2/models/{MODEL}/infer",
            json={
                "id": "v2-request",
                "inputs": [
                    {"name": tensor["name"], "shape": [3, len(rows[0])], "datatype": "FP32",
                     "data": rows}
                ],
            },
        )  # fmt: skip
    assert answer.status_code == 200, answer.text
    # And the gRPC one: the same data plane, so the same mirror.
    grpc_tensor = triton_grpc.InferInput(tensor["name"], [3, len(rows[0])], "FP32")
    grpc_tensor.set_data_from_numpy(np.array(rows, dtype=np.float32))
    with closing(triton_grpc.InferenceServerClient(shadowed.grpc_address)) as grpc_client:
        grpc_client.infer(MODEL, [grpc_tensor], request_id="grpc-request")

    mirrored = len(reference["batches"]) + 2
    assert wait_counted(shadowed, mirrored) == {"ok": mirrored}
    with shadowed.client() as client:
        metrics = client.get("/metrics").text
    candidate = reference["candidate_version"]
    assert (
        f'keel_shadow_requests_total{{candidate_version="{candidate}",model="{MODEL}",'
        f'model_version="{reference["production_version"]}",status="ok"}} {mirrored}.0'
    ) in metrics
    assert f'keel_shadow_rows_compared_total{{candidate_version="{candidate}"' in metrics
    # The shadow families are exactly those the alert rules and dashboard are held to.
    exported = {n for n in exported_families(metrics) if n.startswith("keel_")}
    assert exported == DECLARED_METRICS | SHADOW_METRICS

    # SIGTERM flushes the log: every mirrored request is in it afterwards.
    assert shadowed.stop() in (0, -signal.SIGTERM)
    records = read_log(log_url)
    assert len(records) == mirrored
    assert {r.status for r in records} == {CandidateStatus.OK}
    assert {r.candidate_version for r in records} == {candidate}
    assert {r.primary_version for r in records} == {reference["production_version"]}
    records_api = [r for r in records if r.request_id not in ("v2-request", "grpc-request")]
    for record, primary, expected in zip(
        records_api, reference["primary"], reference["candidate"], strict=True
    ):
        assert record.rows == len(primary)
        assert record.primary_output["label"].tolist() == [p["label_index"] for p in primary]
        assert record.candidate_output is not None
        assert record.candidate_output["label"].tolist() == [p["label_index"] for p in expected]
        assert record.inputs is not None
        assert record.input_hash
        assert record.candidate_ms is not None
        assert record.candidate_ms > 0
    assert any(r.request_id == "v2-request" and r.rows == 3 for r in records)
    assert any(r.request_id == "grpc-request" and r.rows == 3 for r in records)
    store = open_log_store(log_url)
    try:
        (info,) = store.candidates(MODEL)
    finally:
        store.close()
    assert info.kind == "in-process"
    assert info.candidate_version == candidate
    assert info.rss_bytes is not None
    assert info.rss_bytes > 0


def test_candidate_failures_never_reach_the_primary_and_are_counted_and_logged(
    demo_registry: Path,
    server: ServerProcess,
    reference: dict[str, Any],
    tmp_path: Path,
    stop_later: Callable[[ServerProcess], None],
) -> None:
    log_url = f"sqlite:///{tmp_path / 'predictions.sqlite'}"
    candidate = reference["candidate_version"]
    with fault_proxy(server.url) as proxy:
        shadowed = start_behind_proxy(
            demo_registry, proxy, candidate, tmp_path, stop_later,
            KEEL_SHADOW__QUEUE_SIZE="2",
            # Every failure mode counted as it happens: no pausing after timeouts
            # (test_a_candidate_that_keeps_timing_out_is_paused_then_tried_again).
            KEEL_SHADOW__PAUSE_AFTER_TIMEOUTS="0",
        )  # fmt: skip
        sent = 0
        expected_counts: Counter[str] = Counter()

        def one_request(i: int) -> None:
            batch = reference["batches"][i % len(reference["batches"])]
            expected = reference["primary"][i % len(reference["batches"])]
            answered, version = predictions(shadowed, batch)
            # Exactly a shadow-free server's answer, whatever the candidate does.
            assert answered == expected
            assert version == reference["production_version"]

        def traffic(proxy: FaultProxy, mode: str, requests: int, pause_s: float) -> None:
            nonlocal sent
            proxy.set(mode, delay_s=0.5)
            for i in range(requests):
                one_request(i)
                time.sleep(pause_s)
            sent += requests

        def burst(proxy: FaultProxy, mode: str, requests: int) -> None:
            """``requests`` at once, so that they all arrive within the candidate's timeout
            however slow the machine is at sending them one after another."""
            nonlocal sent
            proxy.set(mode, delay_s=0.5)
            start = threading.Barrier(requests)

            def released(i: int) -> None:
                start.wait(timeout=30)
                one_request(i)

            with ThreadPoolExecutor(max_workers=requests) as pool:
                for done in [pool.submit(released, i) for i in range(requests)]:
                    done.result()
            sent += requests

        # Answers, answers 500, drops the connection, answers after the timeout (each
        # call is abandoned then): each outcome counted as it happens.
        for mode, requests, pause_s, status in (
            (FORWARD, 5, 0.05, "ok"),
            (ERROR, 5, 0.05, "error"),
            (CLOSE, 3, 0.05, "error"),
            (DELAY, 3, 0.3, "timeout"),
        ):
            traffic(proxy, mode, requests, pause_s)
            expected_counts[status] += requests
            assert wait_counted(shadowed, sent) == expected_counts, mode
        # Never answers, and requests come all at once, well within the timeout: one
        # call runs, two wait in the queue, the rest are dropped at once.
        burst(proxy, HANG, 12)
        counts = wait_counted(shadowed, sent)
        hang_timeouts = counts["timeout"] - expected_counts["timeout"]
        assert counts["ok"] == 5
        assert counts["error"] == 8
        assert hang_timeouts >= 1
        assert counts["dropped"] >= 1
        assert hang_timeouts + counts["dropped"] == 12
        # The shadow never held the primary up: its queue stayed within its bound.
        assert shadow_state(shadowed)["queued"] <= 2
        with shadowed.client() as client:
            metrics = client.get("/metrics").text
        for status, count in counts.items():
            assert f'status="{status}"}} {float(count)}' in metrics, status
        assert shadowed.stop() in (0, -signal.SIGTERM)

    records = read_log(log_url)
    assert Counter(r.status.value for r in records) == Counter(counts)
    errors = [r.error or "" for r in records if r.status is CandidateStatus.ERROR]
    assert sum("HTTP 500" in e for e in errors) == 5
    assert all(e for e in errors)
    timeouts = [r for r in records if r.status is CandidateStatus.TIMEOUT]
    assert all(r.error == "no answer within 150 ms" for r in timeouts)
    assert all(r.candidate_output is None for r in records if r.status is not CandidateStatus.OK)
    dropped = [r for r in records if r.status is CandidateStatus.DROPPED]
    assert all(r.error == "shadow queue full" and r.candidate_ms is None for r in dropped)
    ok = [r for r in records if r.status is CandidateStatus.OK]
    assert {r.candidate_version for r in ok} == {candidate}


def test_a_candidate_that_keeps_timing_out_is_paused_then_tried_again(
    demo_registry: Path,
    server: ServerProcess,
    reference: dict[str, Any],
    tmp_path: Path,
    stop_later: Callable[[ServerProcess], None],
) -> None:
    log_url = f"sqlite:///{tmp_path / 'predictions.sqlite'}"
    candidate = reference["candidate_version"]
    pause_s = 3.0
    with fault_proxy(server.url) as proxy:
        shadowed = start_behind_proxy(
            demo_registry, proxy, candidate, tmp_path, stop_later,
            KEEL_SHADOW__PAUSE_AFTER_TIMEOUTS="2",
            KEEL_SHADOW__PAUSE_S=str(pause_s), KEEL_SHADOW__MAX_PAUSE_S=str(pause_s),
        )  # fmt: skip

        def send(requests: int) -> None:
            for i in range(requests):
                batch = reference["batches"][i % len(reference["batches"])]
                answered, version = predictions(shadowed, batch)
                assert answered == reference["primary"][i % len(reference["batches"])]
                assert version == reference["production_version"]

        # One call at a time: the third request's call would start only after the
        # second's timeout, which starts the pause, so it and those after it are
        # dropped without a call, however slow the machine.
        proxy.set(HANG)
        send(6)
        assert wait_counted(shadowed, 6) == {"timeout": 2, "dropped": 4}
        state = shadow_state(shadowed)
        assert state["candidate"]["ready"] is False
        assert 0 < state["candidate"]["paused_s"] <= pause_s
        assert state["candidate"]["timeouts_in_a_row"] == 2
        with shadowed.client() as client:
            metrics = client.get("/metrics").text
        assert (
            f'keel_shadow_candidate_ready{{candidate_version="{candidate}",model="{MODEL}"}} 0.0'
            in metrics
        )

        # The candidate is back: once the pause ends, the next call is tried, and its
        # answer ends the pausing.
        proxy.set(FORWARD)
        wait_shadow_ready(shadowed)
        send(3)
        assert wait_counted(shadowed, 9) == {"timeout": 2, "dropped": 4, "ok": 3}
        assert shadow_state(shadowed)["candidate"]["timeouts_in_a_row"] == 0
        assert shadowed.stop() in (0, -signal.SIGTERM)

    server_log = (tmp_path / "server.log").read_text()
    assert "2 timeouts in a row; calls paused for 3 s" in server_log
    assert "answers again; mirroring resumed" in server_log
    records = read_log(log_url)
    assert Counter(r.status.value for r in records) == {"timeout": 2, "dropped": 4, "ok": 3}
    dropped = [r for r in records if r.status is CandidateStatus.DROPPED]
    assert {r.error for r in dropped} == {"candidate paused after 2 timeouts in a row"}
    # A dropped request's record still holds what the primary saw and answered.
    assert all(r.inputs is not None and r.primary_output for r in dropped)


def test_shadow_of_a_model_that_is_not_served_is_refused(demo_registry: Path) -> None:
    from support import run_keel

    result = run_keel(
        "serve", f"{MODEL}@production", "--registry", str(demo_registry),
        "--shadow", "digits-mlp@production",
    )  # fmt: skip
    assert result.returncode != 0
    assert "shadow candidate for 'digits-mlp': that model is not served" in result.stderr


def test_a_model_without_a_shadow_has_no_shadow_state(server: ServerProcess) -> None:
    with server.client() as client:
        answer = client.get(SHADOW)
    assert answer.status_code == 404
    assert "no shadow candidate" in answer.json()["error"]
