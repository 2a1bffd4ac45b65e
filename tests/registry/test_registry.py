"""The registry: layout, metadata, aliases and history, references, integrity, atomicity."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keel.errors import (
    AmbiguousVersion,
    IntegrityError,
    InvalidName,
    ModelNotFound,
    RegistryError,
    UnsafeArtifact,
)
from keel.loading import load_version
from keel.publishing import publish
from keel.registry import Registry, parse_ref
from keel.registry.storage import Storage
from keel.verification import verify
from support import OnnxModel, git


def _publish(model: OnnxModel, registry: Registry, source: Path, **kwargs: object):
    return publish(
        model.path,
        name="cancer",
        signature=model.signature,
        registry=registry,
        reference=model.valid_frame,
        source_dir=source,
        **kwargs,  # type: ignore[arg-type]
    )


def test_layout_is_name_sha_timestamp_with_metadata_and_lock(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    meta = _publish(breast_cancer_model, registry, git_repo)
    sha = git(git_repo, "rev-parse", "HEAD")
    sha_folder, stamp = meta.version.split("/")
    assert sha_folder == sha
    assert len(sha) == 40
    folder = registry.storage.local_path(f"cancer/{sha}/{stamp}")
    assert sorted(p.name for p in folder.iterdir()) == [
        "metadata.json",
        "model.onnx",
        "requirements.lock",
    ]
    assert meta.source.git_dirty is False
    for name, digest in meta.files.items():
        data = (folder / name).read_bytes()
        assert digest.sha256 == hashlib.sha256(data).hexdigest()
        assert digest.size == len(data)


def test_metadata_records_environment_reference_and_golden(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    meta = _publish(
        breast_cancer_model, registry, git_repo, metrics={"auc": 0.99}, params={"C": 1.0}
    )
    stored = json.loads(registry.storage.read_bytes(f"cancer/{meta.version}/metadata.json"))
    for field in (
        "name",
        "version",
        "created_at",
        "source",
        "files",
        "signature",
        "environment",
        "reference",
        "golden",
        "training",
        "artifact",
    ):
        assert field in stored
    assert stored["environment"]["packages"]["numpy"] == np.__version__
    lock = registry.storage.read_bytes(f"cancer/{meta.version}/requirements.lock").decode()
    assert f"numpy=={np.__version__}\n" in lock
    assert meta.reference is not None
    assert meta.reference.rows == len(breast_cancer_model.valid_frame)
    assert set(meta.reference.features) == {f.name for f in meta.signature.features}
    radius = meta.reference.features["mean_radius"]
    assert radius.kind == "numeric"
    assert radius.null_rate == 0.0
    assert len(radius.quantiles) == 11
    assert sum(radius.bin_counts) == meta.reference.rows
    assert "probabilities[benign]" in meta.reference.predictions
    assert meta.reference.predictions["label"].kind == "categorical"
    assert len(meta.golden.inputs) == 32
    assert np.asarray(meta.golden.outputs["probabilities"]).shape == (32, 2)
    assert meta.training.metrics == {"auc": 0.99}


def test_dirty_tree_is_recorded(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    (git_repo / "train.py").write_text("print('changed')\n")
    assert _publish(breast_cancer_model, registry, git_repo).source.git_dirty is True


def test_publishing_outside_git_is_refused_unless_allowed(
    breast_cancer_model: OnnxModel, registry: Registry, tmp_path: Path
) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    with pytest.raises(Exception, match="not inside a git repository"):
        _publish(breast_cancer_model, registry, outside)
    meta = _publish(breast_cancer_model, registry, outside, allow_untracked=True)
    assert meta.version.startswith("untracked/")


def test_aliases_resolve_and_every_change_is_in_history(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    first = _publish(breast_cancer_model, registry, git_repo, alias="production")
    second = _publish(breast_cancer_model, registry, git_repo, alias="candidate")
    assert registry.resolve("cancer").version == first.version
    assert registry.resolve("cancer@candidate").version == second.version
    assert registry.resolve("cancer@latest").version == second.version
    registry.set_alias("cancer", "production", "candidate", by="alice", reason="shadow passed")
    assert registry.resolve("cancer@production").version == second.version
    history = registry.alias_history("cancer")
    assert [(e.alias, e.version, e.previous) for e in history] == [
        ("production", first.version, None),
        ("candidate", second.version, None),
        ("production", second.version, first.version),
    ]
    assert history[-1].by == "alice"
    assert history[-1].reason == "shadow passed"
    with pytest.raises(ModelNotFound, match="aliases of cancer: candidate, production"):
        registry.resolve("cancer@staging")


def test_versions_resolve_by_unique_prefix(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    first = _publish(breast_cancer_model, registry, git_repo)
    second = _publish(breast_cancer_model, registry, git_repo)
    sha, stamp = second.version.split("/")
    assert registry.resolve(f"cancer@{second.version}").version == second.version
    assert registry.resolve(f"cancer@{sha[:8]}/{stamp[:-1]}").version == second.version
    with pytest.raises(AmbiguousVersion, match="matches 2 versions"):
        registry.resolve(f"cancer@{sha[:10]}")
    assert registry.versions("cancer") == [first.version, second.version]
    with pytest.raises(ModelNotFound):
        registry.resolve("cancer@abcdef0/2")


def test_a_short_id_or_a_label_names_a_version_like_the_full_version(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    first = _publish(breast_cancer_model, registry, git_repo)
    second = _publish(breast_cancer_model, registry, git_repo)
    ids = registry.short_ids("cancer")
    assert list(ids) == [first.version, second.version]
    assert len(set(ids.values())) == 2
    for meta in (first, second):
        assert registry.resolve(f"cancer@{ids[meta.version]}").version == meta.version
        label = meta.version.replace("/", "-", 1)
        assert registry.resolve(f"cancer@{label}").version == meta.version
    registry.set_alias("cancer", "production", ids[first.version])
    assert registry.aliases("cancer") == {"production": first.version}


def test_an_ambiguous_sha_prefix_lists_every_candidate_by_short_id(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    first = _publish(breast_cancer_model, registry, git_repo)
    second = _publish(breast_cancer_model, registry, git_repo)
    ids = registry.short_ids("cancer")
    with pytest.raises(AmbiguousVersion) as refused:
        registry.resolve(f"cancer@{first.version[:7]}")
    message = str(refused.value)
    assert "matches 2 versions; name one by its short id" in message
    assert f"{ids[second.version]} ({second.version}), {ids[first.version]} ({first.version})" in (
        message
    )
    with pytest.raises(ModelNotFound, match="keel models versions cancer"):
        registry.resolve("cancer@0000000")


def test_an_alias_differing_from_another_only_by_case_is_refused_naming_it(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    meta = _publish(breast_cancer_model, registry, git_repo, alias="production")
    for twin in ("Production", "PRODUCTION"):
        with pytest.raises(
            InvalidName, match=r"already has the alias 'production'.*use 'production'"
        ):
            registry.set_alias("cancer", twin, "latest")
    assert registry.aliases("cancer") == {"production": meta.version}
    registry.set_alias("cancer", "production", "latest", reason="the same alias still moves")
    registry.set_alias("cancer", "production-eu", "latest")
    assert set(registry.aliases("cancer")) == {"production", "production-eu"}


def test_a_deleted_alias_is_gone_and_its_deletion_is_in_the_history(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    meta = _publish(breast_cancer_model, registry, git_repo, alias="candidate")
    event = registry.delete_alias("cancer", "candidate", by="alice", reason="rolled back")
    assert (event.alias, event.version, event.previous) == ("candidate", None, meta.version)
    assert registry.aliases("cancer") == {}
    assert registry.alias_history("cancer")[-1] == event
    assert (event.by, event.reason) == ("alice", "rolled back")
    with pytest.raises(ModelNotFound, match="no such alias"):
        registry.resolve("cancer@candidate")
    with pytest.raises(ModelNotFound, match=r"has no alias 'candidate' \(aliases: none\)"):
        registry.delete_alias("cancer", "candidate")
    assert len(registry.alias_history("cancer")) == 2
    with pytest.raises(ModelNotFound, match="no published version"):
        registry.delete_alias("no-such-model", "production")
    assert not registry.storage.exists("no-such-model")


@pytest.mark.parametrize(
    "alias", ["abcdef0", "b08cbf8d66233a24847cc621aff9bbd67590bb97-20261206T2005", "untracked-2026"]
)
def test_an_alias_that_reads_as_a_version_is_refused(registry: Registry, alias: str) -> None:
    with pytest.raises(InvalidName, match="mistaken for a version"):
        registry.set_alias("cancer", alias, "latest")


@pytest.mark.parametrize(
    "ref", ["../etc", "a/b@production", ".hidden", "a..b", "", "name@../../x", "x@a/../../b"]
)
def test_names_with_path_tricks_are_refused(ref: str) -> None:
    with pytest.raises(InvalidName):
        parse_ref(ref)


def test_latest_cannot_be_set_as_an_alias(registry: Registry) -> None:
    with pytest.raises(InvalidName, match="latest"):
        registry.set_alias("cancer", "latest", "abc")


def test_flipped_byte_fails_load_with_the_file_named(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    meta = _publish(breast_cancer_model, registry, git_repo)
    artifact = registry.storage.local_path(f"cancer/{meta.version}/model.onnx")
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model\.onnx does not match its recorded hash"):
        load_version(registry, meta)


def test_artifact_path_trick_in_metadata_is_refused(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    meta = _publish(breast_cancer_model, registry, git_repo)
    path = registry.storage.local_path(f"cancer/{meta.version}/metadata.json")
    raw = json.loads(path.read_text())
    raw["files"]["../../outside.onnx"] = raw["files"].pop("model.onnx")
    raw["artifact"]["path"] = "../../outside.onnx"
    path.write_text(json.dumps(raw))
    with pytest.raises(RegistryError, match="not allowed in a version folder"):
        registry.resolve(f"cancer@{meta.version}")


def test_folder_without_metadata_is_not_a_version(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    meta = _publish(breast_cancer_model, registry, git_repo)
    # What an object-store publish that died before its commit marker leaves.
    partial = registry.storage.local_path("cancer/" + "f" * 40 + "/20990101T000000.000000Z")
    partial.mkdir(parents=True)
    (partial / "model.onnx").write_bytes(breast_cancer_model.path.read_bytes())
    assert registry.versions("cancer") == [meta.version]
    assert registry.resolve("cancer@latest").version == meta.version


def _publish_and_die(model_path: str, signature_json: str, root: str, source: str) -> None:
    """Publish, but SIGKILL this process once the first chunk of the artifact is copied."""
    from keel.signature import Signature

    def die(_: int) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    publish(
        Path(model_path),
        name="cancer",
        signature=Signature.from_json(signature_json),
        registry=Registry(root),
        source_dir=source,
        progress=die,
    )


def test_publish_killed_half_way_leaves_registry_as_it_was(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    before = _publish(breast_cancer_model, registry, git_repo, alias="production")
    tree_before = _tree(registry)
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=_publish_and_die,
        args=(
            str(breast_cancer_model.path),
            breast_cancer_model.signature.to_json(),
            registry.url,
            str(git_repo),
        ),
    )
    process.start()
    process.join(timeout=120)
    assert process.exitcode == -signal.SIGKILL
    assert registry.versions("cancer") == [before.version]
    assert registry.aliases("cancer") == {"production": before.version}
    assert _tree(registry) == tree_before
    # The next publish succeeds and sweeps nothing it should not.
    assert _publish(breast_cancer_model, registry, git_repo).version != before.version


def _tree(registry: Registry) -> list[str]:
    root = registry.storage.local_path("")
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if ".staging" not in p.parts and not p.name.endswith(".lock")
    )


def _move_aliases(root: str, worker: int, count: int, versions: list[str]) -> None:
    registry = Registry(root)
    for i in range(count):
        registry.set_alias("cancer", "production", versions[i % 2], by=f"w{worker}", reason=str(i))


def test_concurrent_alias_writers_lose_no_change(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    versions = [_publish(breast_cancer_model, registry, git_repo).version for _ in range(2)]
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_move_aliases, args=(registry.url, w, 15, versions))
        for w in range(3)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    history = registry.alias_history("cancer")
    assert len(history) == 45
    assert sorted((e.by, e.reason) for e in history) == sorted(
        (f"w{w}", str(i)) for w in range(3) for i in range(15)
    )


def test_storage_write_is_all_or_nothing(tmp_path: Path) -> None:
    storage = Storage(str(tmp_path))
    storage.write_bytes("a/b.json", b"first")
    storage.write_bytes("a/b.json", b"second")
    assert storage.read_bytes("a/b.json") == b"second"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.json"]


def test_registry_url_from_environment_variable(tmp_path: Path) -> None:
    code = "from keel.settings import Settings; print(Settings().registry)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KEEL_REGISTRY": str(tmp_path)},
    )
    assert result.stdout.strip() == str(tmp_path)


# -- files replaced by links ---------------------------------------------------------------


def _replace_with_link(path: Path, outside: Path) -> None:
    """Move ``path``'s bytes outside the registry and leave a symbolic link to them."""
    outside.parent.mkdir(parents=True, exist_ok=True)
    path.rename(outside)
    path.symlink_to(outside)


@pytest.mark.parametrize("file_name", ["model.onnx", "requirements.lock"])
def test_a_version_file_replaced_by_a_link_to_the_same_bytes_is_refused_on_load(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path, tmp_path: Path,
    file_name: str,
) -> None:  # fmt: skip
    meta = _publish(breast_cancer_model, registry, git_repo)
    stored = registry.storage.local_path(f"cancer/{meta.version}/{file_name}")
    _replace_with_link(stored, tmp_path / "outside" / file_name)
    with pytest.raises(
        UnsafeArtifact, match=rf"{re.escape(file_name)} is reached through a symbolic link"
    ):
        load_version(registry, meta)


def test_metadata_replaced_by_a_link_is_refused_before_it_is_read(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path, tmp_path: Path
) -> None:
    meta = _publish(breast_cancer_model, registry, git_repo)
    stored = registry.storage.local_path(f"cancer/{meta.version}/metadata.json")
    _replace_with_link(stored, tmp_path / "outside" / "metadata.json")
    with pytest.raises(UnsafeArtifact, match=r"metadata\.json is reached through a symbolic link"):
        registry.resolve(f"cancer@{meta.version}")


def test_a_version_folder_replaced_by_a_link_is_refused(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path, tmp_path: Path
) -> None:
    meta = _publish(breast_cancer_model, registry, git_repo)
    folder = registry.storage.local_path(f"cancer/{meta.version}")
    _replace_with_link(folder, tmp_path / "outside" / "version")
    # Not listed as a version; named exactly (as an alias names it), read nowhere.
    assert registry.versions("cancer") == []
    with pytest.raises(UnsafeArtifact, match=r"the folder .* on the way is one"):
        registry.metadata("cancer", meta.version)
    with pytest.raises(UnsafeArtifact, match=r"the folder .* on the way is one"):
        load_version(registry, meta)


def test_an_artifact_that_is_a_named_pipe_is_refused_without_blocking(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path
) -> None:
    meta = _publish(breast_cancer_model, registry, git_repo)
    artifact = registry.storage.local_path(f"cancer/{meta.version}/model.onnx")
    artifact.unlink()
    os.mkfifo(artifact)
    with pytest.raises(UnsafeArtifact, match="a named pipe, not a regular file"):
        load_version(registry, meta)


def test_keel_verify_refuses_a_linked_artifact(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path, tmp_path: Path
) -> None:
    meta = _publish(breast_cancer_model, registry, git_repo)
    stored = registry.storage.local_path(f"cancer/{meta.version}/model.onnx")
    _replace_with_link(stored, tmp_path / "outside" / "model.onnx")
    report = verify(registry, meta)
    assert not report.ok
    assert "symbolic link" in " ".join(report.problems())


def test_a_registry_root_reached_through_a_link_still_loads(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path, tmp_path: Path
) -> None:
    meta = _publish(breast_cancer_model, registry, git_repo)
    linked = tmp_path / "linked-registry"
    linked.symlink_to(registry.storage.local_path(""), target_is_directory=True)
    through_link = Registry(linked)
    load_version(through_link, through_link.resolve(f"cancer@{meta.version}")).close()


def test_an_artifact_named_through_a_link_is_published_as_its_bytes(
    breast_cancer_model: OnnxModel, registry: Registry, git_repo: Path, tmp_path: Path
) -> None:
    # DVC and git-annex keep a workspace's files as links: the bytes are what is stored.
    link = tmp_path / "workspace" / "model.onnx"
    link.parent.mkdir()
    link.symlink_to(breast_cancer_model.path)
    meta = publish(
        link,
        name="cancer",
        signature=breast_cancer_model.signature,
        registry=registry,
        source_dir=git_repo,
    )
    stored = registry.storage.local_path(f"cancer/{meta.version}/model.onnx")
    assert not stored.is_symlink()
    load_version(registry, meta).close()
