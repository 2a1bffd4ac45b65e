"""The redeploy recipe of docs/registry.md, run for real: an old version rebuilt from the registry.

A training repository publishes version 1, then moves on: new code, a new
version as ``production``. Following the documented steps with real git, a real
virtual environment and keel's own commands, the old version's code is checked
out at the sha the registry recorded, its environment is created from the
recorded lock, and that environment's ``keel verify`` and ``keel env diff
--strict`` prove it reproduces. The lock is installed with the pinned uv: the
recorded environment is this test environment, so ``make setup`` (which CI
runs first) has put every wheel it names in uv's cache and only the index's
file lists are fetched.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from support import git

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
UV = REPO_ROOT / ".tools" / "bin" / "uv"
# The keel of the environment the tests (and so the training script) run in.
TRAINING_KEEL = Path(sys.executable).parent / "keel"
MODEL = "breast-cancer"

# The throwaway repository's training code; six months later only C changes.
TRAIN_SCRIPT = '''\
"""Train the breast-cancer classifier and publish it to $KEEL_REGISTRY."""

import os
import tempfile
from pathlib import Path

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from keel import publish
from keel.examples.breast_cancer import build_signature, export_onnx, load_frame, split
from keel.signature import to_arrays

C = {c}

frame, target, classes = load_frame()
train_frame, valid_frame, y_train, _ = split(frame, target)
signature = build_signature(frame, classes)
x_train = to_arrays(train_frame, signature)["input"]
model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
model.fit(x_train, y_train)
with tempfile.TemporaryDirectory() as scratch:
    artifact = Path(scratch) / "model.onnx"
    export_onnx(model, x_train.shape[1], artifact)
    meta = publish(
        artifact,
        name="{model}",
        signature=signature,
        registry=os.environ["KEEL_REGISTRY"],
        reference=valid_frame,
        alias="production",
        params={{"C": C}},
        critical_packages=["skl2onnx"],
        source_dir=Path(__file__).parent,
    )
print(meta.ref)
'''
FIRST_SCRIPT = TRAIN_SCRIPT.format(c="1.0", model=MODEL)
LATER_SCRIPT = TRAIN_SCRIPT.format(c="0.05", model=MODEL)


@pytest.fixture
def uv() -> Path:
    """The pinned uv, which ``make setup`` installs; without it the test fails, never skips."""
    if not UV.is_file():
        pytest.fail(
            f"{UV} is missing: run `make setup` first. It installs the pinned uv and fills "
            "its cache with the wheels this test installs."
        )
    return UV


def _environ(registry: Path) -> dict[str, str]:
    """This environment with the registry exported, as the recipe does, and nothing that
    would let a new virtual environment import this checkout's keel instead of its own."""
    environ = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    # Wide enough that rich never wraps a version reference.
    return {**environ, "KEEL_REGISTRY": str(registry), "COLUMNS": "250"}


def _run(*argv: str | Path, environ: dict[str, str], cwd: Path | None = None) -> str:
    """Run one command of the recipe; it must exit 0. Its standard output."""
    result = subprocess.run(
        [str(arg) for arg in argv],
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"{argv} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
    return result.stdout


def _commit(repo: Path, script: str) -> None:
    (repo / "train.py").write_text(script)
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "training code")


def _short(ref: str) -> str:
    """``name@sha/timestamp`` as the docs write it: unique prefixes of both parts."""
    name, version = ref.split("@")
    sha, timestamp = version.split("/")
    return f"{name}@{sha[:7]}/{timestamp[:13]}"


def _create_environment(
    uv: Path, venv: Path, requirements: Path, keel_source: Path, environ: dict[str, str]
) -> Path:
    """Step 2 of the recipe with uv: a venv of this Python, the lock, then keel.

    ``--no-deps`` everywhere: the lock names every distribution, dependencies
    included, so nothing is resolved and nothing outside it is installed;
    ``uv pip check`` then proves the set is consistent. The wheels come from the
    cache ``make setup`` filled; the index is still asked which files each pin
    has, because ``uv sync`` (what ``make setup`` runs) installs from the lock's
    URLs and leaves no index pages in the cache for an offline install to use.
    """
    environ = {**environ, "UV_PYTHON_DOWNLOADS": "never"}
    python = venv / "bin" / "python"
    _run(uv, "venv", "--quiet", "--python", sys.executable, venv, environ=environ)
    install = ("pip", "install", "--no-deps", "--python", python)
    _run(uv, *install, "-r", requirements, environ=environ)
    _run(uv, *install, keel_source, environ=environ)
    _run(uv, "pip", "check", "--python", python, environ=environ)
    return venv / "bin" / "keel"


@dataclass(frozen=True)
class TrainingHistory:
    """A training repository that published a version, then moved on."""

    registry: Path
    repo: Path
    recorded_sha: str
    published: str


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> TrainingHistory:
    """Version 1 published from one commit, then six months of other training code."""
    root = tmp_path_factory.mktemp("history")
    registry, repo = root / "registry", root / "training"
    repo.mkdir()
    git(repo, "init", "-q")
    _commit(repo, FIRST_SCRIPT)
    published = _run(sys.executable, "train.py", environ=_environ(registry), cwd=repo).strip()
    recorded_sha = git(repo, "rev-parse", "HEAD")
    _commit(repo, LATER_SCRIPT)
    assert git(repo, "rev-parse", "HEAD") != recorded_sha
    return TrainingHistory(registry, repo, recorded_sha, published)


def test_an_old_version_is_redeployed_from_its_recorded_commit_and_environment(
    history: TrainingHistory, tmp_path: Path, uv: Path
) -> None:
    environ, old = _environ(history.registry), tmp_path / "old"
    ref = _short(history.published)

    # 1. The training code at the recorded commit.
    shown = json.loads(_run(TRAINING_KEEL, "models", "show", ref, "--json", environ=environ))
    assert shown["source"] == {"git_sha": history.recorded_sha, "git_dirty": False}
    sha = shown["source"]["git_sha"]
    git(tmp_path, "clone", "-q", str(history.repo), str(old))
    git(old, "checkout", "-q", sha)
    assert (old / "train.py").read_text() == FIRST_SCRIPT

    # 2. The recorded environment. keel came from its checkout, not an index: the
    #    lock names it in a comment rather than pinning a name no index has.
    lock = _run(TRAINING_KEEL, "env", "lock", ref, environ=environ)
    (old / "requirements.txt").write_text(lock)
    lines = lock.splitlines()
    assert lines[0] == f"# {history.published}: trained from git {sha}"
    assert lines[1].startswith(f"# python {platform.python_version()} (cpython) on ")
    assert not [line for line in lines if line.startswith("keel")]
    (keel_line,) = [line for line in lines if line.startswith("# keel==")]
    found = re.search(r"installed from (\S+?)(?: \(editable\))?, not a package index", keel_line)
    assert found, keel_line
    keel_source = Path(unquote(urlparse(found[1]).path))
    assert keel_source == REPO_ROOT
    started = time.monotonic()
    keel = _create_environment(
        uv, old / ".venv-old", old / "requirements.txt", keel_source, environ
    )
    print(f"environment created in {time.monotonic() - started:.1f} s")
    where = _run(keel.parent / "python", "-c", "import keel; print(keel.__file__)", environ=environ)
    assert Path(where.strip()).is_relative_to(old / ".venv-old"), where

    # 3. Proof, from the new environment: hashes, reload, golden outputs; no critical drift.
    verified = _run(keel, "verify", ref, environ=environ, cwd=old)
    assert f"OK {history.published} verified" in verified
    diff = _run(keel, "env", "diff", ref, "--strict", environ=environ, cwd=old)
    assert f"the environment matches the one {history.published} was trained in" in diff


def test_a_recreated_environment_missing_a_critical_library_fails_env_diff_strict(
    history: TrainingHistory, tmp_path: Path, uv: Path
) -> None:
    environ, ref = _environ(history.registry), history.published
    lock = _run(TRAINING_KEEL, "env", "lock", ref, environ=environ)
    # The training script declared skl2onnx critical; a trimmed lock leaves it out.
    trimmed = tmp_path / "requirements.txt"
    trimmed.write_text("".join(line for line in lock.splitlines(True) if "skl2onnx" not in line))
    keel = _create_environment(uv, tmp_path / ".venv-trimmed", trimmed, REPO_ROOT, environ)
    recorded = importlib_metadata.version("skl2onnx")

    # The golden outputs still reproduce without it, so verify passes, with a warning...
    verify = subprocess.run(
        [keel, "verify", ref], env=environ, capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"critical libraries differ from training: skl2onnx {recorded} → -" in verify.stderr
    # ...and env diff --strict is the step of the recipe that refuses the environment.
    diff = subprocess.run(
        [keel, "env", "diff", ref, "--strict", "--json"],
        env=environ, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert json.loads(diff.stdout)["packages"] == [
        {"name": "skl2onnx", "recorded": recorded, "current": None, "critical": True}
    ]
