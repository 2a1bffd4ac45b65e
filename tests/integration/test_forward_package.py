"""docs/forwards.md, run as written: safetensors models published and served through forwards.

A PyTorch MLP's state_dict is published with the built-in torch-mlp by the doc's own
``keel publish`` command and served by a real ``keel serve``. The doc's own forward is
a real package: its files are taken from the doc, built and installed with the pinned
uv (hatchling, keel's own build backend, is in uv's cache after ``make setup``), and
the doc's commands then train, publish and serve a model through it and ask it for a
prediction over HTTP.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from safetensors.numpy import load_file

from keel.registry import Registry
from mlp_state_dict import (
    IRIS_FEATURES,
    IRIS_SPECIES,
    iris_signature,
    save_state_dict,
    state_dict,
    train_iris_mlp,
)
from serving.keel_server import ServerProcess, start_server
from support import git, training_repo

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
UV = REPO_ROOT / ".tools" / "bin" / "uv"
DOC = REPO_ROOT / "docs" / "forwards.md"
TORCH_SECTION = "### torch-mlp"
OWN_SECTION = "## Your own forward"
PACKAGE = "softmax-regression"


def _section(heading: str) -> str:
    """The doc's text under ``heading``, up to the next heading of the same level or higher."""
    lines = DOC.read_text().splitlines(keepends=True)
    assert heading + "\n" in lines, f"{DOC} has no section {heading!r}"
    level = heading.split(" ")[0]
    section: list[str] = []
    fenced = False
    for line in lines[lines.index(heading + "\n") + 1 :]:
        fenced ^= line.startswith("```")
        # A '# comment' in a code block is not a heading.
        if not fenced and re.match(rf"#{{1,{len(level)}}} ", line):
            break
        section.append(line)
    return "".join(section)


def _doc_files(section: str) -> dict[str, str]:
    """Every file the section shows as "`path`:" followed by a fenced block."""
    found = re.findall(r"^`([\w./-]+)`:\n\n```[a-z]+\n(.*?)^```$", section, flags=re.M | re.S)
    return dict(found)


def _doc_commands(section: str) -> list[list[str]]:
    """Every command of the section's ``sh`` blocks, continuation lines joined, as argv."""
    commands: list[list[str]] = []
    for block in re.findall(r"^```sh\n(.*?)^```$", section, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def _environ(site: Path | None) -> dict[str, str]:
    """This environment, with ``site`` (the installed package) importable or not at all."""
    environ = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "KEEL_REGISTRY"}}
    return environ | {"PYTHONPATH": str(site)} if site is not None else environ


def _run(argv: list[str | Path], cwd: Path, site: Path | None = None) -> str:
    """Run a command the doc shows; it must exit 0. Its standard output."""
    result = subprocess.run(
        [str(arg) for arg in argv], cwd=cwd, env=_environ(site),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"{argv} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
    return result.stdout


def _keel(argv: list[str], cwd: Path, site: Path | None = None) -> str:
    """The doc's ``keel ...`` command, run by this environment's keel."""
    assert argv[0] == "keel", argv
    return _run([sys.executable, "-m", "keel", *argv[1:]], cwd, site)


@contextmanager
def _serving(
    registry: Path, refs: tuple[str, ...], log: Path, site: Path | None
) -> Iterator[ServerProcess]:
    """A real ``keel serve``, with ``site`` importable or not; stopped on the way out."""
    environ = {"PYTHONPATH": str(site)} if site is not None else {}
    server = start_server(registry, refs, log, **environ)
    try:
        yield server
    except BaseException:
        server.stop()
        raise
    # uvicorn re-raises the stop signal once it has drained: exit by SIGTERM is clean.
    assert server.stop() in (0, -signal.SIGTERM), log.read_text()


def test_a_pytorch_state_dict_publishes_with_torch_mlp_and_serves_its_probabilities(
    tmp_path: Path,
) -> None:
    trained = train_iris_mlp()
    repo = training_repo(tmp_path / "training")
    save_state_dict(state_dict(trained.classifier), repo / "model.safetensors")
    (repo / "signature.json").write_text(iris_signature().model_dump_json())
    with (repo / "valid.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=IRIS_FEATURES)
        writer.writeheader()
        writer.writerows(trained.records())

    (publish,) = [argv for argv in _doc_commands(_section(TORCH_SECTION)) if argv[1] == "publish"]
    _keel(publish, repo)
    ref = f"{publish[publish.index('--name') + 1]}@{publish[publish.index('--alias') + 1]}"
    meta = Registry(repo / "registry").resolve(ref)
    assert meta.artifact.format == "safetensors"
    assert meta.artifact.forward == "torch-mlp"
    assert meta.artifact.forward_config == {"activation": "relu", "output": "softmax"}

    expected = trained.classifier.predict_proba(trained.features)
    name = ref.split("@")[0]
    with _serving(repo / "registry", (ref,), tmp_path / "server.log", None) as server:
        server.wait_ready()
        with server.client() as client:
            records = client.post(
                f"/v1/models/{name}/predict", json={"instances": trained.records()}
            )
            v2 = client.post(
                f"/v2/models/{name}/infer",
                json={"inputs": [{"name": "input", "shape": list(trained.features.shape),
                                  "datatype": "FP32", "data": trained.features.ravel().tolist()}]},
            )  # fmt: skip
    assert records.status_code == 200, records.text
    predictions = records.json()["predictions"]
    np.testing.assert_allclose(
        [p["probabilities"] for p in predictions], expected, rtol=1e-5, atol=1e-7
    )
    assert [p["label"] for p in predictions] == [IRIS_SPECIES[i] for i in expected.argmax(axis=1)]
    assert v2.status_code == 200, v2.text
    (probabilities,) = [o for o in v2.json()["outputs"] if o["name"] == "probabilities"]
    np.testing.assert_allclose(
        np.reshape(probabilities["data"], expected.shape), expected, rtol=1e-5, atol=1e-7
    )


@dataclass(frozen=True)
class DocRun:
    """The doc's own-forward section, run up to ``keel serve``: where, and what is left."""

    repo: Path
    site: Path
    serve: list[str]
    requests: list[list[str]]


def _install(package: Path, site: Path) -> None:
    """Build and install ``package`` (what the doc's pip install does) into ``site``."""
    if not UV.is_file():
        pytest.fail(f"{UV} is missing: run `make setup` first; it installs the pinned uv")
    install = [UV, "pip", "install", "--no-deps", "--target", site, "--python", sys.executable]
    _run([*install, package], package.parent)


@pytest.fixture(scope="module")
def doc_run(tmp_path_factory: pytest.TempPathFactory) -> DocRun:
    """The package built and installed, the model trained and published, as the doc says."""
    section = _section(OWN_SECTION)
    repo = training_repo(tmp_path_factory.mktemp("own-forward") / "training")
    files = _doc_files(section)
    assert set(files) == {
        f"{PACKAGE}/pyproject.toml", f"{PACKAGE}/keel_softmax_regression.py", "export_iris.py"
    }  # fmt: skip
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "training code and its forward")

    site = repo.parent / "site"
    commands = _doc_commands(section)
    for index, argv in enumerate(commands):
        match argv:
            case ["python", "-m", "pip", "install", package]:
                _install(repo / package, site)
            case ["python", "-c", code]:
                assert "softmax-regression" in _run([sys.executable, "-c", code], repo, site)
            case ["python", script]:
                _run([sys.executable, script], repo)
            case ["keel", "publish", *_]:
                assert "published" in _keel(argv, repo, site)
            case ["keel", "serve", *_]:
                return DocRun(repo, site, argv, commands[index + 1 :])
            case _:
                pytest.fail(f"{DOC} shows a command this test does not run: {argv}")
    pytest.fail(f"{DOC}'s section {OWN_SECTION!r} never runs keel serve")


def _softmax_regression(repo: Path, instances: list[dict[str, float]]) -> np.ndarray:
    """What the doc's forward computes, from the weights the doc's script wrote."""
    weights = load_file(str(repo / "iris.safetensors"))
    x = np.array([[row[name] for name in IRIS_FEATURES] for row in instances], np.float64)
    logits = x @ weights["coef"].T.astype(np.float64) + weights["intercept"]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return probabilities


def test_a_forward_installed_from_a_package_publishes_and_serves(
    doc_run: DocRun, tmp_path: Path
) -> None:
    refs = tuple(doc_run.serve[2:])
    meta = Registry(doc_run.repo / "registry").resolve(refs[0])
    assert meta.artifact.forward == "softmax-regression"
    assert meta.artifact.forward_config == {"input_name": "input"}

    (curl,) = doc_run.requests
    assert curl[0] == "curl", curl
    path = urlparse(f"http://{curl[2]}").path
    body = curl[curl.index("-d") + 1]
    with _serving(doc_run.repo / "registry", refs, tmp_path / "server.log", doc_run.site) as server:
        server.wait_ready()
        with server.client() as client:
            response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    instances = json.loads(body)["instances"]
    (prediction,) = response.json()["predictions"]
    expected = _softmax_regression(doc_run.repo, instances)[0]
    np.testing.assert_allclose(prediction["probabilities"], expected, rtol=1e-5, atol=1e-7)
    assert prediction["label"] == "setosa"


def test_without_the_package_the_model_is_refused_as_an_unknown_forward(
    doc_run: DocRun, tmp_path: Path
) -> None:
    refs = tuple(doc_run.serve[2:])
    name = refs[0].split("@")[0]
    with _serving(doc_run.repo / "registry", refs, tmp_path / "server.log", None) as server:
        server.wait_live()
        with server.client() as client:
            state = _wait_for_load(client, f"/v2/models/{name}")
            ready = client.get(f"/v2/models/{name}/ready")
    assert state["state"] == "failed", state
    failure = state["failure"]
    assert failure.startswith("unknown forward implementation 'softmax-regression'; known: ")
    assert "torch-mlp" in failure
    assert ready.status_code == 503


def _wait_for_load(client: httpx.Client, path: str, timeout: float = 60) -> dict[str, Any]:
    """The model's ``keel`` metadata once the server has tried to load it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Until the server has resolved the model's alias, it does not know the model.
        response = client.get(path)
        if response.status_code == 200 and response.json()["keel"]["state"] != "loading":
            keel: dict[str, Any] = response.json()["keel"]
            return keel
        time.sleep(0.05)
    raise AssertionError(f"{path} still loading after {timeout} s")
