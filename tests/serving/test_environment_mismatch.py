"""The users' opening story: a dependency bump changes the outputs, and keel refuses readiness.

A registry copy is changed the way a dependency bump looks from the server: the
recorded training environment says numpy had another version than the one
installed here, and (for the first test) the golden outputs no longer match what
the model gives now.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from keel_server import ServerProcess, free_port, start_server
from prometheus_client.parser import text_string_to_metric_families

from keel.environment import TrainingEnvironment, capture_environment
from keel.registry import Registry

MODEL = "breast-cancer"
REF = f"{MODEL}@production"
# A numpy that is not the one installed here, as a training environment may record.
TRAINED_NUMPY = "1.25.2" if capture_environment().packages["numpy"] == "1.26.4" else "1.26.4"


def _current_numpy() -> str:
    return capture_environment().packages["numpy"]


def _record_other_numpy(registry: Path, ref: str, *, perturb_golden: bool) -> str:
    """Rewrite a version's recorded environment (and requirements.lock, with its digest).

    metadata.json is the commit marker and holds every other file's digest, so
    the version stays self-consistent: only the recorded numpy differs from here.
    """
    meta = Registry(registry).resolve(ref)
    folder = registry / meta.name / meta.version
    raw = json.loads((folder / "metadata.json").read_text())
    raw["environment"]["packages"]["numpy"] = TRAINED_NUMPY
    lock = TrainingEnvironment.model_validate(raw["environment"]).requirements_lock().encode()
    (folder / "requirements.lock").write_bytes(lock)
    raw["files"]["requirements.lock"] = {
        "sha256": hashlib.sha256(lock).hexdigest(),
        "size": len(lock),
    }
    if perturb_golden:
        # What the bump did to the numbers: the outputs served now are not the recorded ones.
        raw["golden"]["outputs"]["probabilities"][0][0] += 0.5
    (folder / "metadata.json").write_text(json.dumps(raw))
    return meta.version.replace("/", "-")


def _settled_state(server: ServerProcess, timeout: float = 60) -> dict[str, Any]:
    """The model's ``keel`` metadata once it has left the loading state."""
    deadline = time.monotonic() + timeout
    with server.client() as client:
        while True:
            assert server.process.poll() is None, server.log.read_text()
            try:
                meta = client.get(f"/v2/models/{MODEL}")
            except httpx.TransportError:
                meta = None
            if meta is not None and meta.status_code == 200:
                state: dict[str, Any] = meta.json()["keel"]
                if state["state"] != "loading":
                    return state
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.05)


def _records(registry: Path) -> list[dict[str, Any]]:
    return list(Registry(registry).resolve(REF).golden.inputs[:2])


def _start_with_flag(registry: Path, log: Path) -> ServerProcess:
    """``keel serve --strict-env``, the command-line way to ask for the same refusal."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "keel", "serve", REF, "--registry", str(registry),
         "--port", str(port), "--strict-env"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return ServerProcess(process, f"http://127.0.0.1:{port}", log)


def test_a_dependency_bump_that_changes_outputs_is_refused_naming_golden_and_library(
    registry_copy: Path, tmp_path: Path, stop_later: Callable[[ServerProcess], None]
) -> None:
    _record_other_numpy(registry_copy, REF, perturb_golden=True)
    server = start_server(
        registry_copy, (REF,), tmp_path / "log", KEEL_SERVER__WATCH_INTERVAL_S="0"
    )
    stop_later(server)
    server.wait_live()
    changed = f"numpy {TRAINED_NUMPY} -> {_current_numpy()}"
    state = _settled_state(server)
    assert state["state"] == "failed"
    assert "golden" in state["failure"]
    assert changed in state["failure"]
    with server.client() as client:
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get(f"/v2/models/{MODEL}/ready").status_code == 503
        answer = client.post(
            f"/v1/models/{MODEL}/predict", json={"instances": _records(registry_copy)}
        )
        assert answer.status_code == 503
        assert "golden" in answer.json()["error"]
        assert changed in answer.json()["error"]
    log = server.log.read_text()
    assert "does not reproduce its golden outputs" in log
    assert f"the serving environment differs from training in: {changed}" in log


@pytest.mark.parametrize("how", ["setting", "flag"])
def test_strict_env_refuses_a_version_trained_with_another_numpy_even_if_golden_holds(
    registry_copy: Path, tmp_path: Path, stop_later: Callable[[ServerProcess], None], how: str
) -> None:
    _record_other_numpy(registry_copy, REF, perturb_golden=False)
    log = tmp_path / "log"
    if how == "setting":
        server = start_server(
            registry_copy, (REF,), log,
            KEEL_SERVER__STRICT_ENV="true", KEEL_SERVER__WATCH_INTERVAL_S="0",
        )  # fmt: skip
    else:
        server = _start_with_flag(registry_copy, log)
    stop_later(server)
    server.wait_live()
    changed = f"numpy {TRAINED_NUMPY} -> {_current_numpy()}"
    state = _settled_state(server)
    assert state["state"] == "failed"
    assert "strict_env" in state["failure"]
    assert changed in state["failure"]
    with server.client() as client:
        assert client.get("/v2/health/ready").status_code == 503
        answer = client.post(
            f"/v1/models/{MODEL}/predict", json={"instances": _records(registry_copy)}
        )
        assert answer.status_code == 503
        assert changed in answer.json()["error"]
    assert changed in server.log.read_text()


def test_without_strict_env_the_version_serves_and_the_mismatch_is_a_metric(
    registry_copy: Path, tmp_path: Path, stop_later: Callable[[ServerProcess], None]
) -> None:
    label = _record_other_numpy(registry_copy, REF, perturb_golden=False)
    server = start_server(
        registry_copy, (REF,), tmp_path / "log", KEEL_SERVER__WATCH_INTERVAL_S="0"
    )
    stop_later(server)
    server.wait_ready()
    with server.client() as client:
        answer = client.post(
            f"/v1/models/{MODEL}/predict", json={"instances": _records(registry_copy)}
        )
        assert answer.status_code == 200, answer.text
        metrics = client.get("/metrics").text
    samples = [s for family in text_string_to_metric_families(metrics) for s in family.samples]
    (mismatch,) = [
        s.value
        for s in samples
        if s.name == "keel_environment_mismatch"
        and s.labels == {"model": MODEL, "model_version": label}
    ]
    assert mismatch == 1
    assert f"numpy {TRAINED_NUMPY} -> {_current_numpy()}" in server.log.read_text()
