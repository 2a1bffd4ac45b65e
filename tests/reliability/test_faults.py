"""Faults a running server must ride out, on real ``keel serve`` processes.

A corrupt artifact behind a hot swap, SIGTERM with many requests in flight, a model
that raises on input its signature lets through, a model answering NaN or infinity, and
SIGTERM with thousands of prediction-log records unwritten. The faults covered elsewhere
(a publish killed with SIGKILL, the registry unreadable at start, the prediction log
down, a shadow candidate crashing or hanging) are listed in docs/reliability.md with
their tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from built_models import LOG_OF_INPUT, STORE_LOOKUP, UNKNOWN_STORE, WIDE_MLP
from figures import Figures
from load_driver import JSON_HEADERS, LoadSpec, run_load
from served_models import BINARY_HEADER, json_body, read_served_models

from keel.registry import Registry
from serving.keel_server import ServerProcess, start_server

pytestmark = pytest.mark.integration

SECTION = "faults"
BREAST_CANCER = "breast-cancer"
# Never a file system path or a stack trace in an answer (see test_access.py too).
LEAKS = ("Traceback", 'File "')


def _label(version: str) -> str:
    return version.replace("/", "-", 1)


def _records(registry: Path, ref: str, count: int) -> list[dict[str, Any]]:
    inputs = Registry(registry).resolve(ref).golden.inputs
    return [dict(inputs[i % len(inputs)]) for i in range(count)]


def _stopped_cleanly(server: ServerProcess) -> None:
    assert server.stop() in (0, -signal.SIGTERM), server.log.read_text()


# -- a corrupt artifact during a hot swap ------------------------------------------------


def _flip_a_byte(registry: Path, ref: str) -> str:
    """Flip one byte in the middle of ``ref``'s artifact; its version label."""
    meta = Registry(registry).resolve(ref)
    artifact = registry / meta.name / meta.version / meta.artifact.path
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    return _label(meta.version)


def test_a_corrupt_artifact_in_a_hot_swap_is_refused_and_the_old_version_serves_on(
    demo_registry: Path, tmp_path: Path, figures: Figures
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(demo_registry, registry)
    old = _label(Registry(registry).resolve(f"{BREAST_CANCER}@production").version)
    broken = _flip_a_byte(registry, f"{BREAST_CANCER}@candidate")
    # The alias watcher is how a release reaches a running server: no restart, no admin call.
    server = start_server(
        registry,
        (f"{BREAST_CANCER}@production",),
        tmp_path / "server.log",
        KEEL_SERVER__WATCH_INTERVAL_S="0.2",
    )
    try:
        server.wait_ready()
        body = {"instances": _records(registry, f"{BREAST_CANCER}@production", 4)}
        answers: list[tuple[int, str]] = []
        with server.client() as client:
            Registry(registry).set_alias(BREAST_CANCER, "production", "candidate", reason="test")
            deadline = time.monotonic() + 30
            while (failed := _state(client, broken)) != "failed":
                assert time.monotonic() < deadline, f"the swap was never tried: {failed}"
                answers.append(_predict(client, body))
            # The watcher keeps finding the alias moved; requests go on meeting the old version.
            for _ in range(50):
                answers.append(_predict(client, body))
            keel = client.get(f"/v2/models/{BREAST_CANCER}/versions/{broken}").json()["keel"]
            direct = client.post(f"/v1/models/{BREAST_CANCER}/versions/{broken}/predict", json=body)
            ready = client.get("/v2/health/ready").status_code
    finally:
        _stopped_cleanly(server)
    failures = sum(status != 200 for status, _ in answers)
    figures.add(
        SECTION,
        "corrupt artifact behind a hot swap",
        requests=len(answers),
        failed=failures,
        answered_by_corrupt_version=sum(version == broken for _, version in answers),
    )
    assert failures == 0, answers
    assert {version for _, version in answers} == {old}
    assert ready == 200
    assert "does not match its recorded hash" in keel["failure"], keel
    assert direct.status_code == 503, direct.text
    assert "does not match its recorded hash" in direct.json()["error"]
    assert not any(leak in direct.text for leak in LEAKS), direct.text
    log = server.log.read_text()
    assert f"kept {BREAST_CANCER}@production on its old version" in log, log


def _state(client: httpx.Client, label: str) -> str | None:
    response = client.get(f"/v2/models/{BREAST_CANCER}/versions/{label}")
    if response.status_code == 404:
        return None
    state: str = response.json()["keel"]["state"]
    return state


def _predict(client: httpx.Client, body: dict[str, Any]) -> tuple[int, str]:
    response = client.post(f"/v1/models/{BREAST_CANCER}/predict", json=body)
    version = response.json().get("model_version", "") if response.status_code == 200 else ""
    return response.status_code, version


# -- SIGTERM with many requests in flight ------------------------------------------------

# A binary request of this many rows keeps the wide model busy for a second or two, so
# the requests sent after it are all in flight together, queued behind it, at the signal.
LONG_ROWS = 16_384
IN_FLIGHT = 48
ROWS = 16
GRACE_PERIOD_S = 10.0


def _gauge_sum(client: httpx.Client, prefix: str) -> float:
    lines = client.get("/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(prefix))


def _in_flight(client: httpx.Client) -> float:
    return _gauge_sum(client, "keel_in_flight_requests{")


def _queued_rows(client: httpx.Client) -> float:
    return _gauge_sum(client, "keel_queue_depth{")


async def _in_flight_then_sigterm(
    server: ServerProcess, long_request: tuple[bytes, dict[str, str]], body: dict[str, Any]
) -> tuple[list[httpx.Response | BaseException], float]:
    """Send the long request and IN_FLIGHT more; once the server holds them all, SIGTERM it."""
    limits = httpx.Limits(max_connections=IN_FLIGHT + 1)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
        content, headers = long_request
        sent = [
            asyncio.create_task(
                client.post(f"/v2/models/{WIDE_MLP}/infer", content=content, headers=headers)
            )
        ]
        with server.client() as probe:
            deadline = time.monotonic() + 30
            # Sent together, the small requests could be read, run and answered while the
            # long one's 4 MiB body was still being read (CI saw it): queue it first.
            while await asyncio.to_thread(_queued_rows, probe) == 0:
                assert time.monotonic() < deadline, "the long request never reached the queue"
                assert not sent[0].done(), "the long request was answered before the others"
            sent += [
                asyncio.create_task(client.post(f"/v1/models/{WIDE_MLP}/predict", json=body))
                for _ in range(IN_FLIGHT)
            ]
            while (held := await asyncio.to_thread(_in_flight, probe)) < len(sent):
                assert time.monotonic() < deadline, f"only {held} requests ever in flight"
                assert not any(task.done() for task in sent), "answers came before the signal"
        signalled = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)
        answers = await asyncio.gather(*sent, return_exceptions=True)
        await asyncio.to_thread(server.process.wait, GRACE_PERIOD_S + 30)
        return answers, time.monotonic() - signalled


def test_sigterm_with_many_requests_in_flight_answers_every_one_within_the_grace_period(
    wide_registry: Path, tmp_path: Path, figures: Figures
) -> None:
    server = start_server(
        wide_registry,
        (f"{WIDE_MLP}@production",),
        tmp_path / "server.log",
        KEEL_SERVER__WATCH_INTERVAL_S="0",
        KEEL_SERVER__GRACE_PERIOD_S=str(GRACE_PERIOD_S),
        # Room for every row at once: this test is about draining, not shedding.
        KEEL_BATCHING__MAX_QUEUE_SIZE=str(LONG_ROWS + IN_FLIGHT * ROWS),
    )
    try:
        server.wait_ready()
        with server.client() as client:
            wide = read_served_models(client)[0]
        header, raw = wide.binary_request(LONG_ROWS)
        encoded = json_body(header)
        long_request = (encoded + raw, {BINARY_HEADER: str(len(encoded))})
        body = {"instances": _records(wide_registry, f"{WIDE_MLP}@production", ROWS)}
        answers, drained_s = asyncio.run(_in_flight_then_sigterm(server, long_request, body))
    finally:
        exit_code = server.stop()
    answered = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 200]
    figures.add(
        SECTION,
        "SIGTERM with requests in flight",
        requests=len(answers),
        answered=len(answered),
        failed=len(answers) - len(answered),
        drain_ms=round(drained_s * 1000),
        grace_period_ms=round(GRACE_PERIOD_S * 1000),
    )
    assert exit_code in (0, -signal.SIGTERM), server.log.read_text()
    assert len(answered) == len(answers), [
        a if isinstance(a, BaseException) else (a.status_code, a.text[:200]) for a in answers
    ]
    assert all(len(a.json()["predictions"]) == ROWS for a in answered[1:])
    assert drained_s < GRACE_PERIOD_S, f"exit {drained_s:.1f} s after SIGTERM"
    assert "models drained and closed" in server.log.read_text()


# -- a model that raises at run time -----------------------------------------------------

ROUNDS = 5
BATCH_MATES = 31


def _store(store: int) -> dict[str, Any]:
    return {"instances": [{"store": store}]}


async def _poison_among_good(url: str) -> list[httpx.Response]:
    """One unknown store among BATCH_MATES good requests, all sent at once (they share batches)."""
    limits = httpx.Limits(max_connections=BATCH_MATES + 1)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        path = f"/v1/models/{STORE_LOOKUP}/predict"
        stores = [UNKNOWN_STORE, *(i % 16 for i in range(BATCH_MATES))]
        return list(await asyncio.gather(*(client.post(path, json=_store(s)) for s in stores)))


def test_a_model_raising_at_run_time_fails_only_that_request_and_the_server_lives_on(
    lookup_registry: Path, tmp_path: Path, figures: Figures
) -> None:
    server = start_server(
        lookup_registry,
        (f"{STORE_LOOKUP}@production",),
        tmp_path / "server.log",
        KEEL_SERVER__WATCH_INTERVAL_S="0",
    )
    try:
        server.wait_ready()
        predict = f"/v1/models/{STORE_LOOKUP}/predict"
        with server.client() as client:
            assert client.post(predict, json=_store(3)).status_code == 200
            alone = client.post(predict, json=_store(UNKNOWN_STORE))
            tensor = {"name": "input", "datatype": "FP32", "shape": [1, 1], "data": [1e3]}
            infer = client.post(f"/v2/models/{STORE_LOOKUP}/infer", json={"inputs": [tensor]})
            rounds = [asyncio.run(_poison_among_good(server.url)) for _ in range(ROUNDS)]
            after = client.post(predict, json=_store(5))
            ready = client.get("/v2/health/ready").status_code
    finally:
        _stopped_cleanly(server)
    poisoned = [alone, infer, *(answers[0] for answers in rounds)]
    mates = [answer for answers in rounds for answer in answers[1:]]
    figures.add(
        SECTION,
        "a model raising at run time on one request's input",
        requests=len(poisoned) + len(mates) + 2,
        failed=sum(a.status_code != 200 for a in mates) + int(after.status_code != 200),
        raising=len(poisoned),
        raising_answered_500=sum(a.status_code == 500 for a in poisoned),
        sent_beside_them=len(mates),
    )
    for answer in poisoned:
        assert answer.status_code == 500, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert "the server logged the details" in answer.json()["error"]
        assert not any(leak in answer.text for leak in LEAKS), answer.text
        assert str(lookup_registry) not in answer.text
    assert [a.status_code for a in mates] == [200] * len(mates)
    assert after.status_code == 200
    assert ready == 200
    logged = [line for line in server.log.read_text().splitlines() if "request failed" in line]
    assert len(logged) == len(poisoned), logged
    assert all("indices element out of data bounds" in line for line in logged), logged


# -- a model that answers NaN or infinity --------------------------------------------------


def _log_of(client: httpx.Client, api: str, x: float, binary: bool = False) -> httpx.Response:
    if api == "records":
        return client.post(f"/v1/models/{LOG_OF_INPUT}/predict", json={"instances": [{"x": x}]})
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 1], "data": [x]}
    body: dict[str, Any] = {"inputs": [tensor]}
    if binary:
        body["parameters"] = {"binary_data_output": True}
    return client.post(f"/v2/models/{LOG_OF_INPUT}/infer", json=body)


def _rejected(client: httpx.Client, reason: str) -> float:
    lines = client.get("/metrics").text.splitlines()
    prefix = "keel_requests_rejected_total{"
    return sum(
        float(line.split()[-1])
        for line in lines
        if line.startswith(prefix) and f'reason="{reason}"' in line
    )


def test_a_nan_or_infinite_output_is_refused_as_a_model_failure_on_every_api(
    log_registry: Path, tmp_path: Path, figures: Figures
) -> None:
    server = start_server(
        log_registry,
        (f"{LOG_OF_INPUT}@production",),
        tmp_path / "server.log",
        KEEL_SERVER__WATCH_INTERVAL_S="0",
    )
    cases = [("records", -1.0, False), ("records", 0.0, False)]
    cases += [("v2 JSON", -1.0, False), ("v2 JSON", 0.0, False), ("v2 binary", -1.0, True)]
    try:
        server.wait_ready()
        with server.client() as client:
            refused = [_log_of(client, api, x, binary) for api, x, binary in cases]
            finite = [_log_of(client, api, 2.0) for api in ("records", "v2 JSON")]
            counted = _rejected(client, "nonfinite_output")
            ready = client.get("/v2/health/ready").status_code
    finally:
        _stopped_cleanly(server)
    figures.add(
        SECTION,
        "a model answering NaN or infinity (records, v2 JSON, v2 binary)",
        requests=len(refused),
        answered_500=sum(a.status_code == 500 for a in refused),
        answered_null=sum(b"null" in a.content for a in refused),
        counted=int(counted),
    )
    for (api, x, _), answer in zip(cases, refused, strict=True):
        assert answer.status_code == 500, (api, x, answer.text)
        assert "the model failed to run this request" in answer.json()["error"], answer.text
        assert b"null" not in answer.content
    assert [a.status_code for a in finite] == [200, 200], [a.text for a in finite]
    assert counted == len(cases)
    assert ready == 200
    logged = [line for line in server.log.read_text().splitlines() if "request failed" in line]
    assert len(logged) == len(cases), logged
    assert all("returned NaN or infinity in output 'value'" in line for line in logged), logged


# -- SIGTERM with thousands of log records pending -----------------------------------------


def _log_state(client: httpx.Client) -> dict[str, Any]:
    state: dict[str, Any] = client.get(f"/v2/models/{BREAST_CANCER}/shadow").json()["log"]
    return state


def _send_records(server: ServerProcess, body: dict[str, Any]) -> dict[str, int]:
    """Two seconds of records requests on 16 connections; the answers' statuses, counted."""
    url = f"{server.url}/v1/models/{BREAST_CANCER}/predict"
    body_bytes = orjson.dumps(body)
    spec = LoadSpec(
        url, body_bytes, headers=JSON_HEADERS, connections=16, duration_s=2.0, warmup_s=0
    )
    return run_load(spec).status


def _settled_log_state(client: httpx.Client) -> dict[str, Any]:
    time.sleep(0.5)
    return _log_state(client)


def test_sigterm_writes_every_accepted_log_record_before_the_server_exits(
    demo_registry: Path, tmp_path: Path, figures: Figures
) -> None:
    log_path = tmp_path / "predictions.sqlite"
    # Nothing is written before the signal: the flush interval and the batch are out of reach.
    server = start_server(
        demo_registry,
        (f"{BREAST_CANCER}@production",),
        tmp_path / "server.log",
        args=("--shadow", f"{BREAST_CANCER}@candidate", "--log-store", f"sqlite:///{log_path}"),
        KEEL_SERVER__WATCH_INTERVAL_S="0",
        KEEL_SHADOW__LOG__FLUSH_INTERVAL_S="3600",
        KEEL_SHADOW__LOG__BATCH_RECORDS="100000",
    )
    try:
        server.wait_ready()
        body = {"instances": _records(demo_registry, f"{BREAST_CANCER}@production", 1)}
        statuses = _send_records(server, body)
        with server.client() as client:
            # The load is over once its answers are in; the mirror may still be logging.
            state = _log_state(client)
            for _ in range(60):
                settled = _settled_log_state(client)
                if settled == state:
                    break
                state = settled
        signalled = time.monotonic()
    finally:
        _stopped_cleanly(server)
    exit_s = time.monotonic() - signalled
    with sqlite3.connect(log_path) as connection:
        (rows,) = connection.execute("SELECT count(*) FROM keel_predictions").fetchone()
    figures.add(
        SECTION,
        "SIGTERM with thousands of prediction-log records pending",
        pending_at_signal=state["pending"],
        written_by_exit=rows,
        exit_s=round(exit_s, 2),
    )
    assert set(statuses) == {"200"}
    assert state["pending"] >= 1000, "too few requests to fill the log"
    assert state["written"] == 0
    assert rows == state["pending"]
