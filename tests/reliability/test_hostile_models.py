"""Hostile model files: refused by ``keel publish`` and by a real server's load path, with the
reason named, before any of their bytes are deserialised, and no planted code ever runs.

The refusals themselves are tested file by file in tests/runtimes (every pickle protocol,
codec and zip layout in test_sniff.py, every external-data location in
test_onnx_external.py, every header lie in test_safetensors_header.py); here the same
kinds of file go the whole way, through the command line and through ``keel serve``.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from figures import Figures
from hostile_files import (
    EXTERNAL_DATA_OUTSIDE,
    PLANTED_VERSION,
    SAFETENSORS_LIES,
    Template,
    joblib_pickle,
    onnx_with_external_data_outside,
    pickle_payload,
    plant_version,
    real_safetensors,
    torch_archive,
    unpickled,
    version_folder,
)

from keel.errors import RegistryError
from keel.registry import Registry
from serving.keel_server import ADMIN_TOKEN, ServerProcess, start_server
from support import run_keel

pytestmark = pytest.mark.integration

SECTION = "hostile_models"
PICKLE = "pickle"
OUTSIDE = "inside the model's folder"
HEADER = "safetensors header"
HASH = "does not match its recorded hash"
UNSAFE_ARTIFACT_EXIT = 4


@dataclass(frozen=True)
class HostileModel:
    """One hostile file: how to make it, what it is published as, and the reason it is refused."""

    case: str
    file_name: str
    template: str  # the demo model whose signature (and forward) it pretends to have
    reason: str
    # Writes the file into a folder (with what it refers to, if anything) and returns it.
    build: Callable[[Path, Path], Path]

    @property
    def name(self) -> str:
        return slug(self.case)


def slug(case: str) -> str:
    """A model name made of the case's words."""
    return re.sub(r"[^a-z0-9]+", "-", case.lower()).strip("-")[:100]


def _bytes(make: Callable[[Path], bytes], file_name: str) -> Callable[[Path, Path], Path]:
    def build(folder: Path, marker: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / file_name
        path.write_bytes(make(marker))
        return path

    return build


def _pickle(protocol: int) -> Callable[[Path], bytes]:
    return lambda marker: pickle_payload(marker, protocol)


def _external(where: str) -> Callable[[Path, Path], Path]:
    def build(folder: Path, marker: Path) -> Path:
        return onnx_with_external_data_outside(folder / "model", folder / "elsewhere", where)

    return build


def _lie(lie: Callable[[bytes], bytes]) -> Callable[[Path], bytes]:
    return lambda marker: lie(real_safetensors())


# Protocol, file name, and the demo model whose metadata (format, forward) it claims.
PICKLES = [(0, "model.onnx", "breast-cancer"), (1, "model.pkl", "breast-cancer")]
PICKLES += [(2, "model.safetensors", "digits-mlp"), (3, "model", "breast-cancer")]
PICKLES += [(4, "weights.bin", "digits-mlp"), (5, "model.pt", "digits-mlp")]

CASES = [
    HostileModel(f"pickle (protocol {p}) named {n}", n, model, PICKLE, _bytes(_pickle(p), n))
    for p, n, model in PICKLES
]
CASES += [
    HostileModel(
        f"torch.save zip archive named {n}", n, "breast-cancer", PICKLE, _bytes(torch_archive, n)
    )
    for n in ("model.pt", "model.onnx")
]
CASES.append(
    HostileModel(
        "joblib zlib-compressed pickle named model.joblib",
        "model.joblib",
        "digits-mlp",
        PICKLE,
        _bytes(joblib_pickle, "model.joblib"),
    )
)
CASES += [
    HostileModel(
        f"ONNX external data {how}", "model.onnx", "breast-cancer", OUTSIDE, _external(where)
    )
    for how, where in EXTERNAL_DATA_OUTSIDE.items()
]
CASES += [
    HostileModel(
        f"safetensors: {lie_name}",
        "model.safetensors",
        "digits-mlp",
        HEADER,
        _bytes(_lie(lie), "model.safetensors"),
    )
    for lie_name, lie in SAFETENSORS_LIES.items()
]
BY_CASE = {case.case: case for case in CASES}


@pytest.fixture(scope="module")
def templates(demo_registry: Path) -> dict[str, Template]:
    return {
        name: Template.of(demo_registry, f"{name}@production")
        for name in ("breast-cancer", "digits-mlp")
    }


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a planted payload would leave its mark; it must stay empty."""
    return tmp_path_factory.mktemp("planted-code-markers")


# -- keel publish ------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    case: HostileModel
    registry: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def published(
    templates: dict[str, Template], markers: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Published]:
    """Every hostile file through ``keel publish``, a few at a time (each is a fresh process)."""
    work = tmp_path_factory.mktemp("publish")
    signatures = {}
    for name, template in templates.items():
        signatures[name] = work / f"{name}.signature.json"
        signatures[name].write_text(json.dumps(template.metadata["signature"]))
    registry = work / "registry"

    def publish(case: HostileModel) -> Published:
        path = case.build(work / case.name, markers / case.name)
        artifact = templates[case.template].metadata["artifact"]
        command = [
            "publish",
            str(path),
            "--name",
            case.name,
            "--signature",
            str(signatures[case.template]),
        ]
        command += ["--registry", str(registry), "--source-dir", str(work), "--allow-untracked"]
        if artifact["forward"] is not None:
            command += [
                "--forward",
                artifact["forward"],
                "--forward-config",
                json.dumps(artifact["forward_config"]),
            ]
        result = subprocess.run(
            [sys.executable, "-m", "keel", *command],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return Published(case, registry, result)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return {p.case.case: p for p in pool.map(publish, CASES)}


@pytest.mark.parametrize("case", BY_CASE)
def test_keel_publish_refuses_the_file_naming_the_reason(
    published: dict[str, Published], markers: Path, figures: Figures, case: str
) -> None:
    outcome = published[case]
    result = outcome.result
    refused = result.returncode == UNSAFE_ARTIFACT_EXIT
    figures.add(
        SECTION,
        case,
        refused_by_publish=int(refused),
        planted_code_run=int((markers / outcome.case.name).exists()),
    )
    assert refused, result.stdout + result.stderr
    assert re.search(re.escape(outcome.case.reason), result.stderr, re.IGNORECASE), result.stderr
    assert "Traceback" not in result.stderr
    assert not (outcome.registry / outcome.case.name).exists()
    assert not (markers / outcome.case.name).exists()


# -- keel serve --------------------------------------------------------------------------

# The published cases a registry could hold as they are (a model.pkl and a second zip
# name add nothing the server path does not meet already), and a version whose file
# no longer matches the hash recorded for it.
NOT_PLANTED = {"pickle (protocol 1) named model.pkl", "torch.save zip archive named model.onnx"}
HASH_MISMATCH = "registry file altered after publishing (hash mismatch)"
SERVED_CASES = [case for case in BY_CASE if case not in NOT_PLANTED] + [HASH_MISMATCH]


@dataclass(frozen=True)
class HostileServer:
    server: ServerProcess
    client: httpx.Client
    registry: Path


@pytest.fixture(scope="module")
def hostile_server(
    demo_registry: Path,
    templates: dict[str, Template],
    markers: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HostileServer]:
    """A server asked to serve every hostile file, planted in a copy of the demo registry,
    beside the untouched breast-cancer model."""
    work = tmp_path_factory.mktemp("planted")
    registry = work / "registry"
    shutil.copytree(demo_registry, registry)
    for case in CASES:
        if case.case in NOT_PLANTED:
            continue
        source = case.build(work / case.name, markers / case.name)
        # Whatever the file refers to beside it (a symbolic link) goes along, unrecorded.
        shutil.copytree(source.parent, version_folder(registry, case.name), symlinks=True)
        template = templates[case.template]
        plant_version(
            registry, case.name, template, {case.file_name: source.read_bytes()}, case.file_name
        )
    altered = (
        plant_version(
            registry,
            slug(HASH_MISMATCH),
            templates["breast-cancer"],
            {"model.onnx": templates["breast-cancer"].artifact()},
            "model.onnx",
        )
        / "model.onnx"
    )
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0x01
    altered.write_bytes(bytes(data))
    refs = ("breast-cancer@production", *(f"{slug(case)}@production" for case in SERVED_CASES))
    running = start_server(registry, refs, work / "server.log", KEEL_SERVER__WATCH_INTERVAL_S="0")
    running.wait_live()
    with httpx.Client(base_url=running.url, timeout=30) as client:
        _wait_until_loaded(running, client, [slug(case) for case in SERVED_CASES])
        yield HostileServer(running, client, registry)
    assert running.stop() in (0, -signal.SIGTERM), running.log.read_text()


def _wait_until_loaded(server: ServerProcess, client: httpx.Client, names: list[str]) -> None:
    """Until every version has passed or failed its checks (they load one after another)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log.read_text()
        states = [_state(client, name) for name in names]
        if all(state not in (None, "loading") for state in states):
            return
        time.sleep(0.1)
    raise AssertionError(f"versions still loading after 120 s:\n{server.log.read_text()}")


def _state(client: httpx.Client, name: str) -> str | None:
    response = client.get(f"/v2/models/{name}")
    if response.status_code == 503:  # named at start, not yet loaded: "still loading"
        return None
    state: str = response.json()["keel"]["state"]
    return state


@pytest.mark.parametrize("case", SERVED_CASES)
def test_the_server_refuses_the_version_and_says_why(
    hostile_server: HostileServer, markers: Path, figures: Figures, case: str
) -> None:
    name = slug(case)
    reason = BY_CASE[case].reason if case in BY_CASE else HASH
    client = hostile_server.client
    keel = client.get(f"/v2/models/{name}").json()["keel"]
    refused = keel["state"] == "failed"
    figures.add(
        SECTION,
        case,
        refused_by_server=int(refused),
        planted_code_run=int((markers / name).exists()),
    )
    assert refused, keel
    assert reason.lower() in keel["failure"].lower(), keel
    logged = [
        line
        for line in hostile_server.server.log.read_text().splitlines()
        if f"model {name}@{PLANTED_VERSION} is not ready" in line
    ]
    assert logged, hostile_server.server.log.read_text()
    assert reason.lower() in logged[0].lower(), logged
    answer = client.post(f"/v2/models/{name}/infer", json={"inputs": []})
    assert answer.status_code == 503, answer.text
    assert reason.lower() in answer.json()["error"].lower(), answer.text
    assert not (markers / name).exists()


def test_the_untouched_model_beside_them_is_served(hostile_server: HostileServer) -> None:
    client = hostile_server.client
    assert _state(client, "breast-cancer") == "ready"
    template = Template.of(hostile_server.registry, "breast-cancer@production")
    record = {f["name"]: 1.0 for f in template.metadata["signature"]["features"]}
    response = client.post("/v1/models/breast-cancer/predict", json={"instances": [record]})
    assert response.status_code == 200, response.text


def test_keel_verify_names_the_altered_file(
    hostile_server: HostileServer, figures: Figures
) -> None:
    result = run_keel(
        "verify", f"{slug(HASH_MISMATCH)}@production", "--registry", str(hostile_server.registry)
    )
    figures.add(SECTION, HASH_MISMATCH, refused_by_verify=int(result.returncode != 0))
    assert result.returncode != 0, result.stdout
    assert "model.onnx" in result.stdout + result.stderr
    assert HASH in result.stdout + result.stderr


# -- metadata.json path tricks -------------------------------------------------------------

PATH_TRICKS = [
    "../../../outside.onnx",
    "/etc/passwd",
    "sub/model.onnx",
    ".model.onnx",
    "model.onnx/..",
]


def trick_metadata(registry: Path, trick: str) -> None:
    """Make breast-cancer's production metadata name its artifact ``trick`` (same hash)."""
    meta = Registry(registry).resolve("breast-cancer@production")
    path = registry / "breast-cancer" / meta.version / "metadata.json"
    raw = json.loads(path.read_text())
    raw["files"][trick] = raw["files"].pop("model.onnx")
    raw["artifact"]["path"] = trick
    path.write_text(json.dumps(raw))


@pytest.fixture(scope="module")
def tricked_registry(demo_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """breast-cancer's production metadata names its artifact ``../../../outside.onnx``, where
    a real copy of the model (same hash) lies, just outside the registry's model folders."""
    registry = tmp_path_factory.mktemp("tricked") / "registry"
    shutil.copytree(demo_registry, registry)
    original = (
        registry / "breast-cancer" / Registry(registry).resolve("breast-cancer@production").version
    )
    shutil.copy(original / "model.onnx", registry / "outside.onnx")
    trick_metadata(registry, PATH_TRICKS[0])
    return registry


@pytest.mark.parametrize("trick", PATH_TRICKS)
def test_the_registry_refuses_a_path_trick_in_metadata(
    demo_registry: Path, tmp_path: Path, figures: Figures, trick: str
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(demo_registry, registry)
    trick_metadata(registry, trick)
    with pytest.raises(RegistryError, match="not allowed in a version folder"):
        Registry(registry).resolve("breast-cancer@production")
    figures.add(SECTION, f"metadata.json artifact path {trick!r}", refused_by_registry=1)


def test_keel_verify_refuses_a_path_trick_in_metadata(
    tricked_registry: Path, figures: Figures
) -> None:
    result = run_keel("verify", "breast-cancer@production", "--registry", str(tricked_registry))
    case = f"metadata.json artifact path {PATH_TRICKS[0]!r}"
    figures.add(SECTION, case, refused_by_verify=int(result.returncode != 0))
    assert result.returncode != 0, result.stdout
    assert "not allowed in a version folder" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def tricked_server(
    tricked_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("tricked-server") / "server.log"
    refs = ("breast-cancer@production", "digits-mlp@production")
    running = start_server(tricked_registry, refs, log, KEEL_SERVER__WATCH_INTERVAL_S="0")
    running.wait_live()
    yield running
    assert running.stop() in (0, -signal.SIGTERM), log.read_text()


def test_a_path_trick_in_metadata_is_logged_never_served_and_the_rest_still_load(
    tricked_server: ServerProcess, figures: Figures
) -> None:
    with tricked_server.client() as client:
        deadline = time.monotonic() + 60
        while _state(client, "digits-mlp") != "ready" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _state(client, "digits-mlp") == "ready", tricked_server.log.read_text()
        answer = client.post("/v1/models/breast-cancer/predict", json={"instances": [{}]})
        assert answer.status_code in (404, 503), answer.text
        assert client.get("/v2/health/ready").status_code == 503
    log = tricked_server.log.read_text()
    refused = "not allowed in a version folder" in log
    figures.add(
        SECTION, f"metadata.json artifact path {PATH_TRICKS[0]!r}", refused_by_server=int(refused)
    )
    assert refused, log


# -- the payloads are live, and none of them ran --------------------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda m: pickle_payload(m, 0), lambda m: pickle_payload(m, 5), torch_archive, joblib_pickle],
    ids=["pickle-protocol-0", "pickle-protocol-5", "torch-zip", "joblib-zlib"],
)
def test_each_payload_runs_its_code_when_loaded_carelessly(
    tmp_path: Path, make: Callable[[Path], bytes]
) -> None:
    """The control: what keel refused would have run code, had anything unpickled it."""
    marker = tmp_path / "marker"
    unpickled(make(marker))
    assert marker.exists()


def test_no_planted_code_ran_anywhere(
    published: dict[str, Published], hostile_server: HostileServer, markers: Path, figures: Figures
) -> None:
    assert set(published) == set(BY_CASE)
    ran = sorted(marker.name for marker in markers.iterdir())
    figures.run["planted_code_markers_found"] = len(ran)
    assert ran == []


# -- registry files replaced by links, and what a refusal may show -------------------------

# What a file planted as a model might hold; no answer may quote any of it.
SECRET = b"root:x:0:0:root:/root:/bin/bash\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG\n"
LINK = "symbolic link"


def _link_out(path: Path, outside: Path) -> None:
    """Replace ``path`` with a link to a copy of its bytes outside the registry."""
    outside.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, outside)
    path.unlink()
    path.symlink_to(outside)


def _answers_quote(text: str) -> bool:
    return any(part.decode() in text for part in SECRET.split(b"\n") if part)


def test_linked_registry_files_are_refused_and_no_refusal_quotes_a_file(
    demo_registry: Path,
    templates: dict[str, Template],
    tmp_path: Path,
    figures: Figures,
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(demo_registry, registry)
    store = Registry(registry)
    digits = store.resolve("digits-mlp@production")
    _link_out(registry / digits.name / digits.version / "model.safetensors", tmp_path / "o" / "a")
    plant_version(
        registry, "text-artifact", templates["breast-cancer"], {"model.onnx": SECRET}, "model.onnx"
    )
    candidate = store.resolve("breast-cancer@candidate")
    server = start_server(
        registry,
        ("breast-cancer@production", "digits-mlp@production", "text-artifact@production"),
        tmp_path / "server.log",
        KEEL_ADMIN_TOKEN=ADMIN_TOKEN,
        KEEL_SERVER__WATCH_INTERVAL_S="0",
    )
    try:
        server.wait_live()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            _wait_until_loaded(server, client, ["breast-cancer", "digits-mlp", "text-artifact"])
            linked = client.get("/v2/models/digits-mlp").json()["keel"]
            linked_answer = client.post("/v1/models/digits-mlp/predict", json={"instances": [{}]})
            text = client.get("/v2/models/text-artifact").json()["keel"]
            text_answer = client.post("/v2/models/text-artifact/infer", json={"inputs": []})
            # A hot swap to a version whose requirements.lock became a link.
            lock = registry / candidate.name / candidate.version / "requirements.lock"
            _link_out(lock, tmp_path / "o" / "b")
            store.set_alias("breast-cancer", "production", "candidate", reason="test")
            swap = client.post(
                "/v2/repository/models/breast-cancer/load",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            record = {
                f["name"]: 1.0 for f in templates["breast-cancer"].metadata["signature"]["features"]
            }
            served = client.post("/v1/models/breast-cancer/predict", json={"instances": [record]})
    finally:
        assert server.stop() in (0, -signal.SIGTERM), server.log.read_text()
    verified = run_keel("verify", "digits-mlp@production", "--registry", str(registry))
    figures.add(
        SECTION,
        "registry file replaced by a link to the same bytes (load, hot swap, verify)",
        refused_by_server=int(linked["state"] == "failed"),
        refused_by_hot_swap=int(swap.status_code == 503),
        refused_by_verify=int(verified.returncode != 0),
    )
    assert linked["state"] == "failed", linked
    assert LINK in linked["failure"], linked
    assert linked_answer.status_code == 503, linked_answer.text
    assert LINK in linked_answer.json()["error"]
    assert swap.status_code == 503, swap.text
    assert LINK in swap.json()["error"], swap.text
    assert served.status_code == 200, served.text
    assert verified.returncode != 0, verified.stdout
    assert LINK in verified.stdout + verified.stderr
    assert text["state"] == "failed", text
    assert "it looks like text" in text["failure"], text
    assert text_answer.status_code == 503, text_answer.text
    assert not _answers_quote(json.dumps(text) + text_answer.text + server.log.read_text())
