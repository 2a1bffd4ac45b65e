"""The registry on an object store: the same behaviour on ``s3://`` as on a local folder.

An S3-compatible server (moto's standalone server) runs on a free loopback
port for the session; each test gets its own bucket. The registry reaches it
the way a deployment does: an ``s3://bucket/prefix`` URL, with the endpoint
and credentials from the standard ``AWS_*`` environment variables.
"""

from __future__ import annotations

import itertools
import multiprocessing
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from moto.server import ThreadedMotoServer

from keel.errors import IntegrityError, RegistryError
from keel.publishing import publish
from keel.registry import ModelMetadata, Registry
from keel.registry import storage as storage_module
from keel.registry.storage import Storage
from keel.verification import verify
from serving.keel_server import start_server
from support import OnnxModel

MODEL = "cancer"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server on a free loopback port, stopped after the session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard AWS environment pointing at the loopback server (also for subprocesses)."""
    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_url(s3_env: dict[str, str]) -> str:
    """``s3://bucket/prefix`` of an empty registry in a fresh bucket."""
    bucket = f"keel-{uuid.uuid4().hex[:12]}"
    Storage(f"s3://{bucket}").fs.mkdir(bucket)
    return f"s3://{bucket}/registry"


@pytest.fixture(params=["local", "s3"])
def any_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    """The same registry behaviour, on a local folder and on an object store."""
    if request.param == "local":
        return Registry(tmp_path / "registry")
    url: str = request.getfixturevalue("s3_url")
    return Registry(url, cache_dir=tmp_path / "cache")


def _publish(model: OnnxModel, registry: Registry, source: Path, **kwargs: object) -> ModelMetadata:
    return publish(
        model.path,
        name=MODEL,
        signature=model.signature,
        registry=registry,
        reference=model.valid_frame,
        source_dir=source,
        **kwargs,  # type: ignore[arg-type]
    )


# -- the core scenario, on both backends ------------------------------------------


def test_publish_list_alias_history_and_verify(
    breast_cancer_model: OnnxModel, any_registry: Registry, git_repo: Path
) -> None:
    first = _publish(breast_cancer_model, any_registry, git_repo, alias="production")
    second = _publish(breast_cancer_model, any_registry, git_repo, alias="candidate")

    assert any_registry.models() == [MODEL]
    assert any_registry.versions(MODEL) == [first.version, second.version]
    assert any_registry.resolve(f"{MODEL}@latest").version == second.version
    assert any_registry.metadata(MODEL, first.version) == first

    any_registry.set_alias(MODEL, "production", "candidate", by="alice", reason="shadow passed")
    assert any_registry.aliases(MODEL) == {
        "production": second.version,
        "candidate": second.version,
    }
    history = any_registry.alias_history(MODEL)
    assert [(e.alias, e.version, e.previous) for e in history] == [
        ("production", first.version, None),
        ("candidate", second.version, None),
        ("production", second.version, first.version),
    ]
    assert (history[-1].by, history[-1].reason) == ("alice", "shadow passed")

    report = verify(any_registry, any_registry.resolve(f"{MODEL}@production"))
    assert report.ok, report.problems()


def test_version_without_metadata_is_invisible(
    breast_cancer_model: OnnxModel, any_registry: Registry, git_repo: Path
) -> None:
    meta = _publish(breast_cancer_model, any_registry, git_repo)
    # What a publish that died before its commit marker leaves behind.
    partial = f"{MODEL}/{'f' * 40}/20990101T000000.000000Z"
    any_registry.storage.write_bytes(f"{partial}/model.onnx", breast_cancer_model.path.read_bytes())
    assert any_registry.storage.exists(f"{partial}/model.onnx")
    assert any_registry.versions(MODEL) == [meta.version]
    assert any_registry.resolve(f"{MODEL}@latest").version == meta.version


def _move_aliases(url: str, worker: int, count: int, versions: list[str]) -> None:
    registry = Registry(url)
    for i in range(count):
        registry.set_alias(MODEL, "production", versions[i % 2], by=f"w{worker}", reason=str(i))


def test_concurrent_alias_writers_lose_no_change(
    breast_cancer_model: OnnxModel, any_registry: Registry, git_repo: Path
) -> None:
    versions = [_publish(breast_cancer_model, any_registry, git_repo).version for _ in range(2)]
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_move_aliases, args=(any_registry.url, w, 10, versions))
        for w in range(4)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    history = any_registry.alias_history(MODEL)
    assert sorted((e.by, e.reason) for e in history) == sorted(
        (f"w{w}", str(i)) for w in range(4) for i in range(10)
    )
    # Each event's ``previous`` is what the one before it set: no write was based on stale data.
    for before, after in itertools.pairwise(history):
        assert after.previous == before.version


# -- what only an object store needs ----------------------------------------------


def test_s3_metadata_is_written_last_and_a_publish_without_it_is_not_a_version(
    breast_cancer_model: OnnxModel,
    s3_url: str,
    git_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = Registry(s3_url, cache_dir=tmp_path / "cache")
    before = _publish(breast_cancer_model, registry, git_repo, alias="production")

    def die(self: Storage, relative: str, data: bytes) -> None:
        raise OSError("connection lost before the commit marker")

    monkeypatch.setattr(Storage, "create_bytes", die)
    with pytest.raises(OSError, match="commit marker"):
        _publish(breast_cancer_model, registry, git_repo)
    monkeypatch.undo()

    stored = registry.storage.fs.find(registry.storage.full(MODEL))
    orphans = [p for p in stored if "model.onnx" in p and before.version not in p]
    assert len(orphans) == 1, "the artifact is uploaded before the commit marker"
    assert registry.versions(MODEL) == [before.version]
    assert registry.resolve(f"{MODEL}@latest").version == before.version


def test_s3_published_version_is_never_overwritten(
    breast_cancer_model: OnnxModel, s3_url: str, git_repo: Path, tmp_path: Path
) -> None:
    registry = Registry(s3_url, cache_dir=tmp_path / "cache")
    meta = _publish(breast_cancer_model, registry, git_repo)
    with pytest.raises(FileExistsError):
        registry.storage.create_bytes(f"{MODEL}/{meta.version}/metadata.json", b"{}")
    assert registry.metadata(MODEL, meta.version) == meta


def test_s3_update_that_loses_a_race_rereads_and_keeps_both_changes(s3_url: str) -> None:
    storage = Storage(s3_url)
    storage.write_bytes("book", b"a")
    calls: list[bytes | None] = []

    def append_b(current: bytes | None) -> bytes:
        calls.append(current)
        if len(calls) == 1:
            # Another writer gets in between this writer's read and its write.
            Storage(s3_url).write_bytes("book", b"a+x")
        return (current or b"") + b"+b"

    storage.update("book", append_b)
    assert calls == [b"a", b"a+x"]
    assert storage.read_bytes("book") == b"a+x+b"


def test_s3_update_that_always_loses_fails_with_a_clear_error(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_module, "UPDATE_ATTEMPTS", 3)
    storage = Storage(s3_url)
    rival = Storage(s3_url)

    def always_beaten(current: bytes | None) -> bytes:
        rival.write_bytes("book", uuid.uuid4().hex.encode())
        return b"mine"

    with pytest.raises(RegistryError, match=r"changed by other writers 3 times.*try again"):
        storage.update("book", always_beaten)
    assert storage.read_bytes("book") != b"mine"


def test_s3_tampered_artifact_fails_fetch_with_the_file_named(
    breast_cancer_model: OnnxModel, s3_url: str, git_repo: Path, tmp_path: Path
) -> None:
    registry = Registry(s3_url, cache_dir=tmp_path / "cache")
    meta = _publish(breast_cancer_model, registry, git_repo)
    data = bytearray(breast_cancer_model.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    registry.storage.write_bytes(f"{MODEL}/{meta.version}/model.onnx", bytes(data))
    with pytest.raises(IntegrityError, match=r"model\.onnx does not match its recorded hash"):
        registry.fetch(meta)


def test_keel_serve_loads_from_s3_and_answers_a_prediction(
    breast_cancer_model: OnnxModel,
    s3_url: str,
    s3_env: dict[str, str],
    git_repo: Path,
    tmp_path: Path,
) -> None:
    registry = Registry(s3_url, cache_dir=tmp_path / "publisher-cache")
    meta = _publish(breast_cancer_model, registry, git_repo, alias="production")
    server = start_server(
        s3_url,  # type: ignore[arg-type]  # the CLI takes a URL as well as a folder
        (f"{MODEL}@production",),
        tmp_path / "server.log",
        KEEL_CACHE_DIR=str(tmp_path / "server-cache"),
        **s3_env,
    )
    try:
        server.wait_ready()
        with server.client() as client:
            response = client.post(
                f"/v1/models/{MODEL}/predict", json={"instances": meta.golden.inputs[:2]}
            )
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["predictions"]) == 2
        np.testing.assert_allclose(
            body["predictions"][0]["probabilities"],
            meta.golden.outputs["probabilities"][0],
            atol=1e-6,
        )
        # What was loaded came from the object store into the server's cache.
        assert (tmp_path / "server-cache").is_dir()
    finally:
        server.stop()
