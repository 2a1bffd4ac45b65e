"""``keel serve --workers N``: one server to the outside, N processes within, on a real server.

Every worker answers; the whole server's figures (request counts, statistics,
drift) add up every worker's; a worker killed with SIGKILL costs no request
beyond those it was answering and is started again; SIGTERM drains every worker;
a worker whose supervisor is gone stops by itself.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from drifted_rows import SHIFTED, drifted, texture_std
from keel_server import ADMIN_TOKEN, DRIFT_WINDOW, ServerProcess, start_server
from test_metric_contract import exported_families

from keel.logstore.opening import open_log_store
from keel.monitoring.merging import WORKER_LABEL
from keel.registry import Registry
from keel.web.run_dir import STATE_PATH
from keel.web.worker_figures import GAUGE_RULES
from metric_contract import DECLARED_METRICS, SHADOW_METRICS, WORKER_METRICS

MODEL = "breast-cancer"
INFER = f"/v2/models/{MODEL}/infer"
V2_BODY = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [0.5] * 30}]}
DRIFT_ENV = {f"KEEL_DRIFT__{key}": str(value) for key, value in DRIFT_WINDOW.items()}


def start_workers(
    registry: Path, log: Path, *args: str, workers: int = 2, **env: str
) -> ServerProcess:
    return start_server(
        registry, (f"{MODEL}@production",), log, ("--workers", str(workers), *args),
        **{"KEEL_SERVER__WATCH_INTERVAL_S": "0", **DRIFT_ENV, **env},
    )  # fmt: skip


def run_dir(server: ServerProcess) -> Path:
    """The workers' shared folder, as the supervisor's first line names it."""
    found = re.search(r"their shared folder: (\S+)\)", server.log.read_text())
    assert found, server.log.read_text()
    return Path(found.group(1))


def own_figures(server: ServerProcess, index: int) -> dict[str, Any]:
    """What worker ``index`` alone counted, asked on its private socket."""
    transport = httpx.HTTPTransport(uds=str(run_dir(server) / f"worker-{index}.sock"))
    with httpx.Client(transport=transport, base_url="http://worker", timeout=10) as client:
        answer = client.get(STATE_PATH)
    assert answer.status_code == 200, answer.text
    figures: dict[str, Any] = answer.json()
    return figures


def answered_by(server: ServerProcess, index: int) -> str:
    """The version worker ``index`` answers an inference with, asked on its private socket."""
    transport = httpx.HTTPTransport(uds=str(run_dir(server) / f"worker-{index}.sock"))
    with httpx.Client(transport=transport, base_url="http://worker", timeout=10) as client:
        answer = client.post(INFER, json=V2_BODY)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-keel-model-version"]


def requests_counted(families: list[dict[str, Any]], endpoint: str) -> float:
    family = next(f for f in families if f["name"] == "keel_requests")
    return sum(
        value
        for name, labels, value in family["samples"]
        if name == "keel_requests_total" and labels["endpoint"] == endpoint
    )


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for_workers_ready(server: ServerProcess, restarts: int, workers: int = 2) -> None:
    """Until every worker is ready again, after ``restarts`` restarts."""
    deadline = time.monotonic() + 60
    expected = {"ready": True, "workers": {"configured": workers, "ready": workers,
                                           "restarts": restarts}}  # fmt: skip
    while time.monotonic() < deadline:
        with server.client() as client:
            ready = client.get("/v2/health/ready").json()
        if ready == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"{ready} is not {expected}:\n{server.log.read_text()}")


def whole_server_metrics(server: ServerProcess, workers: int = 2) -> str:
    """``/metrics`` once every worker's figures are in it (a loaded machine may be slow)."""
    deadline = time.monotonic() + 30
    with server.client() as client:
        while True:
            text = client.get("/metrics").text
            if metric(text, "keel_workers_reporting") == workers or time.monotonic() > deadline:
                return text
            time.sleep(0.2)


def send_fresh(server: ServerProcess, count: int, threads: int = 4) -> list[int]:
    """``count`` v2 requests, each on a new connection (so the kernel spreads them)."""
    statuses: list[int] = []

    def send(share: int) -> None:
        with server.client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            statuses.extend(client.post(INFER, json=V2_BODY).status_code for _ in range(share))

    workers = [threading.Thread(target=send, args=(count // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return statuses


@pytest.fixture(scope="module")
def two_workers(
    demo_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_workers(demo_registry, tmp_path_factory.mktemp("workers") / "server.log")
    server.wait_ready()
    yield server
    assert server.stop() == 0, server.log.read_text()


def test_readiness_says_how_many_workers_are_ready(two_workers: ServerProcess) -> None:
    with two_workers.client() as client:
        answer = client.get("/v2/health/ready")
    assert answer.status_code == 200
    assert answer.json() == {"ready": True, "workers": {"configured": 2, "ready": 2, "restarts": 0}}


def test_every_worker_answers_and_the_server_counts_every_request(
    two_workers: ServerProcess,
) -> None:
    before = [requests_counted(own_figures(two_workers, k)["families"], "v2_infer") for k in (0, 1)]
    assert send_fresh(two_workers, 400) == [200] * 400
    after = [requests_counted(own_figures(two_workers, k)["families"], "v2_infer") for k in (0, 1)]
    answered = [a - b for a, b in zip(after, before, strict=True)]
    assert all(share > 0 for share in answered), answered
    assert sum(answered) == 400
    text = whole_server_metrics(two_workers)
    with two_workers.client() as client:
        stats = client.get(f"/v2/models/{MODEL}/stats").json()["model_stats"][0]
    # Whichever worker the scrape reached, it counts both.
    assert metric(text, "keel_requests_total", endpoint="v2_infer", status="200") == sum(after)
    assert stats["inference_stats"]["success"]["count"] == sum(after)
    assert metric(text, "keel_workers_reporting") == 2
    assert metric(text, "keel_workers_ready") == 2
    assert metric(text, "keel_model_ready", model=MODEL) == 1
    # What belongs to one process stays one process's.
    assert {line.split(WORKER_LABEL + '="')[1][0] for line in text.splitlines()
            if line.startswith("process_start_time_seconds")} == {"0", "1"}  # fmt: skip
    with two_workers.client() as client:
        batching = client.get(f"/v2/models/{MODEL}").json()["keel"]["batching"]
    assert batching["rows_run"] >= sum(after)


def test_every_worker_answers_grpc_on_the_one_grpc_port(two_workers: ServerProcess) -> None:
    def counted() -> list[float]:
        return [
            requests_counted(own_figures(two_workers, k)["families"], "grpc_infer") for k in (0, 1)
        ]

    before = counted()
    tensor = triton_grpc.InferInput("input", [1, 30], "FP32")
    tensor.set_data_from_numpy(np.full((1, 30), 0.5, dtype=np.float32))
    for _ in range(24):
        # A channel of its own, so a connection of its own, which the kernel gives a worker.
        client = triton_grpc.InferenceServerClient(
            two_workers.grpc_address, channel_args=[("grpc.use_local_subchannel_pool", 1)]
        )
        with closing(client):
            assert client.infer(MODEL, [tensor]).as_numpy("label").shape == (1,)
    answered = [a - b for a, b in zip(counted(), before, strict=True)]
    assert all(share > 0 for share in answered), answered
    assert sum(answered) == 24


def test_the_server_exports_the_contract_and_merges_every_gauge_by_a_rule(
    two_workers: ServerProcess,
) -> None:
    text = whole_server_metrics(two_workers)
    exported = {name for name in exported_families(text) if name.startswith("keel_")}
    assert exported == DECLARED_METRICS | WORKER_METRICS
    # A gauge with no rule would be kept apart per worker: only the per-process series are.
    per_worker = {
        line.split("{", 1)[0].removesuffix("_total")
        for line in text.splitlines()
        if f'{WORKER_LABEL}="' in line and not line.startswith("keel_worker_restarts_total")
    }
    assert per_worker == {name for name, rule in GAUGE_RULES.items() if rule == "worker"}


def test_four_workers_each_answer_and_hash_each_file_once(
    demo_registry: Path, tmp_path: Path
) -> None:
    server = start_workers(demo_registry, tmp_path / "server.log", workers=4)
    try:
        server.wait_ready()
        assert send_fresh(server, 400) == [200] * 400
        answered = [
            requests_counted(own_figures(server, k)["families"], "v2_infer") for k in range(4)
        ]
        assert all(share > 0 for share in answered), answered
        assert sum(answered) == 400
        # Verified once for the server: one note per file hashed, read by the other three.
        files = Registry(demo_registry).resolve(f"{MODEL}@production").files
        notes = [p for p in (run_dir(server) / "digests").iterdir() if not p.name.endswith(".lock")]
        assert len(notes) == len(files)
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_drift_is_judged_on_the_traffic_every_worker_answered(
    two_workers: ServerProcess, held_out: list[dict[str, Any]]
) -> None:
    rows = drifted(held_out, DRIFT_WINDOW["WINDOW_ROWS"], texture_std(), seed=3)
    with two_workers.client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for start in range(0, len(rows), 20):
            answer = client.post(
                f"/v1/models/{MODEL}/predict", json={"instances": rows[start : start + 20]}
            )
            assert answer.status_code == 200, answer.text
        time.sleep(0.2)  # the windows take their rows twenty times a second
        report = client.get(f"/v2/models/{MODEL}/drift").json()
    own_rows = [
        sum(e["totals"]["rows"] for e in own_figures(two_workers, k)["drift"]) for k in (0, 1)
    ]
    assert all(rows > 0 for rows in own_rows), own_rows
    assert report["rows"] == sum(own_rows)
    features = {column["name"]: column for column in report["features"]}
    assert features[SHIFTED]["status"] == 2, features[SHIFTED]


def test_a_hot_swap_reaches_every_worker_under_load_without_a_failed_request(
    demo_copy: Path, tmp_path: Path
) -> None:
    server = start_workers(demo_copy, tmp_path / "server.log", KEEL_SERVER__WATCH_INTERVAL_S="0.2")
    try:
        server.wait_ready()
        registry = Registry(demo_copy)
        old = registry.resolve(f"{MODEL}@production").version.replace("/", "-")
        new = registry.resolve(f"{MODEL}@candidate").version.replace("/", "-")
        answers: list[tuple[int, str]] = []
        stop = threading.Event()

        def load() -> None:
            with server.client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
                while not stop.is_set():
                    answer = client.post(INFER, json=V2_BODY)
                    answers.append(
                        (answer.status_code, answer.headers.get("x-keel-model-version", ""))
                    )

        clients = [threading.Thread(target=load) for _ in range(4)]
        for client in clients:
            client.start()
        time.sleep(0.5)
        registry.set_alias(MODEL, "production", "candidate", reason="workers hot swap test")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and {answered_by(server, k) for k in (0, 1)} != {new}:
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for client in clients:
            client.join()
        assert {status for status, _ in answers} == {200}
        assert {version for _, version in answers} == {old, new}
        # Once every worker swapped, every answer came from the new version.
        assert answers[-1][1] == new
        assert {answered_by(server, k) for k in (0, 1)} == {new}
    finally:
        assert server.stop() == 0, server.log.read_text()


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_repository_load_reaches_every_worker(
    demo_copy: Path, tmp_path: Path, protocol: str
) -> None:
    server = start_workers(demo_copy, tmp_path / "server.log", KEEL_ADMIN_TOKEN=ADMIN_TOKEN)
    try:
        server.wait_ready()
        registry = Registry(demo_copy)
        new = registry.resolve(f"{MODEL}@candidate").version.replace("/", "-")
        # The alias watcher is off: the move is served once the repository API says so.
        registry.set_alias(MODEL, "production", "candidate", reason="workers load test")
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        if protocol == "grpc":
            with closing(triton_grpc.InferenceServerClient(server.grpc_address)) as grpc_client:
                grpc_client.load_model(MODEL, headers={"authorization": auth["Authorization"]})
        else:
            with server.client(headers=auth) as client:
                loaded = client.post(
                    f"/v2/repository/models/{MODEL}/load",
                    json={"parameters": {"version": "production"}},
                )
            assert loaded.status_code == 200, loaded.text
        # Each worker answers with it, asked directly.
        assert [answered_by(server, k) for k in (0, 1)] == [new, new]
        assert send_fresh(server, 40) == [200] * 40
        # A worker started again afterwards makes the same load before it serves.
        os.kill(own_figures(server, 0)["pid"], signal.SIGKILL)
        wait_for_workers_ready(server, restarts=1)
        assert answered_by(server, 0) == new
    finally:
        assert server.stop() == 0, server.log.read_text()


def wait_for_candidates_ready(server: ServerProcess, workers: int = 2) -> None:
    """Until every worker's own shadow candidate is ready, each asked on its private socket."""
    deadline = time.monotonic() + 60
    while True:
        shadows = [own_figures(server, k)["shadow"].get(MODEL) for k in range(workers)]
        if all(shadow is not None and shadow["candidate"]["ready"] for shadow in shadows):
            return
        assert time.monotonic() < deadline, f"shadow candidates not ready: {shadows}"
        time.sleep(0.1)


def test_every_worker_mirrors_into_one_prediction_log_and_none_is_lost(
    demo_registry: Path, tmp_path: Path
) -> None:
    log_url = f"sqlite:///{tmp_path / 'predictions.sqlite'}"
    server = start_workers(
        demo_registry, tmp_path / "server.log",
        "--shadow", f"{MODEL}@candidate", "--log-store", log_url,
        KEEL_SHADOW__TIMEOUT_MS="5000",
    )  # fmt: skip
    try:
        server.wait_ready()
        # Candidates load after the primaries are ready: a request a worker answers before
        # its candidate is ready is not mirrored (by design), so the test waits for both.
        wait_for_candidates_ready(server)
        assert send_fresh(server, 200) == [200] * 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with server.client() as client:
                status = client.get(f"/v2/models/{MODEL}/shadow").json()
            if sum(status["requests"].values()) >= 200 and status["log"]["pending"] == 0:
                break
            time.sleep(0.1)
        assert status["requests"] == {"ok": 200}, status
        assert status["log"]["written"] + sum(status["log"]["dropped"].values()) == 200
        mirrored = [
            sum(own_figures(server, k)["shadow"][MODEL]["requests"].values()) for k in (0, 1)
        ]
        assert all(count > 0 for count in mirrored), mirrored
        with server.client() as client:
            text = client.get("/metrics").text
        exported = {name for name in exported_families(text) if name.startswith("keel_")}
        assert exported == DECLARED_METRICS | SHADOW_METRICS | WORKER_METRICS
        assert metric(text, "keel_shadow_requests_total", status="ok") == 200
        # The live agreement is the whole server's: each worker's weighed by its rows, as
        # the shadow status weighs them, not a plain mean of the workers' shares.
        assert metric(text, "keel_shadow_agreement_rows") == status["agreement_rows"] == 200
        assert metric(text, "keel_shadow_agreement") == pytest.approx(status["agreement"])
    finally:
        assert server.stop() == 0, server.log.read_text()
    store = open_log_store(log_url)
    try:
        records = store.read(MODEL)
    finally:
        store.close()
    assert len(records) == 200


def test_a_killed_worker_costs_only_its_own_requests_and_is_started_again(
    demo_registry: Path, tmp_path: Path
) -> None:
    server = start_workers(demo_registry, tmp_path / "server.log")
    try:
        server.wait_ready()
        victim = own_figures(server, 0)["pid"]
        assert send_fresh(server, 40) == [200] * 40
        before = metric(whole_server_metrics(server), "keel_requests_total")
        outcomes: list[object] = []
        stop = threading.Event()

        def load() -> None:
            with server.client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
                while not stop.is_set():
                    try:
                        outcomes.append(client.post(INFER, json=V2_BODY).status_code)
                    except httpx.TransportError as exc:
                        outcomes.append(exc)

        clients = [threading.Thread(target=load) for _ in range(4)]
        for client in clients:
            client.start()
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        time.sleep(2.0)
        stop.set()
        for client in clients:
            client.join()
        failed = [o for o in outcomes if o != 200]
        # At most the requests the killed worker was answering: one per client connection,
        # each a broken connection, never an HTTP error.
        assert len(failed) <= len(clients), failed
        assert all(isinstance(o, httpx.TransportError) for o in failed), failed
        assert outcomes.count(200) > 100
        wait_for_workers_ready(server, restarts=1)
        assert own_figures(server, 0)["pid"] != victim
        with server.client() as client:
            text = client.get("/metrics").text
        assert metric(text, "keel_worker_restarts_total", worker="0") == 1
        # What the killed worker counted went with it, yet the server's counters go on
        # from where they were: Prometheus sees no reset.
        assert metric(text, "keel_requests_total") >= before
        assert metric(text, "process_cpu_seconds_total", worker="1") > 0
        assert metric(text, "keel_worker_restarts_total", worker="1") == 0
        assert "worker 0 (pid" in server.log.read_text()
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_sigterm_drains_every_worker_and_leaves_nothing_behind(
    demo_registry: Path, tmp_path: Path
) -> None:
    server = start_workers(demo_registry, tmp_path / "server.log")
    server.wait_ready()
    folder = run_dir(server)
    pids = [own_figures(server, k)["pid"] for k in (0, 1)]
    assert send_fresh(server, 40) == [200] * 40
    assert server.stop() == 0
    log = server.log.read_text()
    assert log.count("readiness is false; draining") == 2, log
    assert log.count("models drained and closed") == 2, log
    assert "every worker has stopped" in log
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    assert not folder.exists()


def test_workers_stop_by_themselves_when_the_supervisor_is_gone(
    demo_registry: Path, tmp_path: Path
) -> None:
    server = start_workers(demo_registry, tmp_path / "server.log")
    server.wait_ready()
    pids = [own_figures(server, k)["pid"] for k in (0, 1)]
    folder = run_dir(server)
    server.process.kill()
    server.process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)
    assert not any(_running(pid) for pid in pids), server.log.read_text()
    assert server.log.read_text().count("is gone; draining") == 2
    # The last to leave took the shared folder (its settings hold the admin token) along.
    assert not folder.exists()


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by init, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status
