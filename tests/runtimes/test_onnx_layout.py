"""The shared ONNX layout: same answers, derived once, checked, and its weights mapped once."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from keel.examples.breast_cancer import export_onnx
from keel.runtimes import load_runtime
from keel.runtimes.onnx_layout import MANIFEST, WEIGHTS, LayoutCache
from keel.settings import RuntimeSettings

SHARE_ALL = RuntimeSettings(shared_layout_min_bytes=0)


@pytest.fixture(scope="module")
def digits_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLP on scikit-learn's digits with two 2048-unit layers: 17 MB of float32 weights."""
    features, labels = load_digits(return_X_y=True)
    model = MLPClassifier(hidden_layer_sizes=(2048, 2048), max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning):  # two epochs do not converge, and need not
        model.fit(features / 16.0, labels)
    path = tmp_path_factory.mktemp("digits") / "model.onnx"
    export_onnx(model, features.shape[1], path)  # as keel's examples export theirs
    return path


def _cache(artifact: Path, folder: Path) -> LayoutCache:
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    return LayoutCache(folder, digest, artifact.stat().st_size)


def _rows(count: int) -> dict[str, np.ndarray]:
    features, _ = load_digits(return_X_y=True)
    return {"input": (features[:count] / 16.0).astype(np.float32)}


def test_the_layout_answers_as_the_published_model_does(digits_mlp: Path, tmp_path: Path) -> None:
    published = load_runtime(digits_mlp)
    shared = load_runtime(digits_mlp, settings=SHARE_ALL, layout=_cache(digits_mlp, tmp_path))
    assert shared._path.is_relative_to(tmp_path)  # type: ignore[attr-defined]
    for count in (1, 64):
        expected, actual = published.predict(_rows(count)), shared.predict(_rows(count))
        np.testing.assert_array_equal(actual["label"], expected["label"])
        np.testing.assert_allclose(actual["probabilities"], expected["probabilities"], rtol=1e-5)


def test_the_weights_are_kept_apart_with_their_digests(digits_mlp: Path, tmp_path: Path) -> None:
    load_runtime(digits_mlp, settings=SHARE_ALL, layout=_cache(digits_mlp, tmp_path))
    [folder] = [path for path in tmp_path.iterdir() if path.is_dir()]
    weights = folder / WEIGHTS
    # The weights, and their prepacked form, are outside the graph, ready to be mapped.
    assert weights.stat().st_size > digits_mlp.stat().st_size
    assert (folder / "model.onnx").stat().st_size < 100_000
    recorded = json.loads((folder / MANIFEST).read_text())["files"]
    assert recorded[WEIGHTS] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_a_layout_is_derived_once_and_found_again(
    digits_mlp: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = _cache(digits_mlp, tmp_path)
    with caplog.at_level(logging.INFO, logger="keel.runtimes"):
        load_runtime(digits_mlp, settings=SHARE_ALL, layout=cache)
        load_runtime(digits_mlp, settings=SHARE_ALL, layout=cache)
    derived = [r for r in caplog.records if r.getMessage().startswith("derived the shared")]
    assert len(derived) == 1


def _flip_bytes(weights: Path) -> None:
    with weights.open("r+b") as stream:
        stream.seek(1000)
        stream.write(b"\xff\xff\xff\xff")


def _link_elsewhere(weights: Path) -> None:
    elsewhere = weights.parent.parent / "elsewhere.bin"
    weights.rename(elsewhere)
    weights.symlink_to(elsewhere)


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (_flip_bytes, "whose digest is not the one recorded"),
        (_link_elsewhere, "cannot be read"),
    ],
)
def test_a_damaged_layout_is_said_and_derived_again(
    digits_mlp: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], None],
    said: str,
) -> None:
    cache = _cache(digits_mlp, tmp_path)
    load_runtime(digits_mlp, settings=SHARE_ALL, layout=cache)
    [weights] = tmp_path.glob(f"*/{WEIGHTS}")
    damage(weights)
    with caplog.at_level(logging.WARNING, logger="keel.runtimes"):
        runtime = load_runtime(digits_mlp, settings=SHARE_ALL, layout=cache)
    assert any(said in r.getMessage() for r in caplog.records)
    assert not weights.is_symlink()
    expected = load_runtime(digits_mlp).predict(_rows(8))
    np.testing.assert_allclose(
        runtime.predict(_rows(8))["probabilities"], expected["probabilities"], rtol=1e-5
    )


def test_the_layout_depends_on_the_optimisation_level(digits_mlp: Path, tmp_path: Path) -> None:
    cache = _cache(digits_mlp, tmp_path)
    for level in ("basic", "all"):
        settings = RuntimeSettings(shared_layout_min_bytes=0, graph_optimization=level)
        load_runtime(digits_mlp, settings=settings, layout=cache)
    assert len([path for path in tmp_path.iterdir() if path.is_dir()]) == 2


def test_a_model_below_the_size_runs_as_published(breast_cancer_onnx: Path, tmp_path: Path) -> None:
    runtime = load_runtime(breast_cancer_onnx, layout=_cache(breast_cancer_onnx, tmp_path))
    assert runtime._path == breast_cancer_onnx  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == []


def test_a_cache_that_cannot_be_written_is_said_and_the_model_runs_as_published(
    breast_cancer_onnx: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="keel.runtimes"):
        runtime = load_runtime(
            breast_cancer_onnx, settings=SHARE_ALL, layout=_cache(breast_cancer_onnx, blocked)
        )
    assert runtime._path == breast_cancer_onnx  # type: ignore[attr-defined]
    [warning] = [r.getMessage() for r in caplog.records]
    assert "cannot keep the shared layout" in warning
    assert "cache_dir" in warning


_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from pathlib import Path
    from keel.runtimes import load_runtime
    from keel.runtimes.onnx_layout import LayoutCache
    from keel.settings import RuntimeSettings

    artifact, folder, digest, size = sys.argv[1:5]
    layout = None if folder == "-" else LayoutCache(Path(folder), digest, int(size))
    runtime = load_runtime(
        artifact, settings=RuntimeSettings(shared_layout_min_bytes=0), layout=layout
    )
    runtime.predict({"input": np.zeros((64, 64), dtype=np.float32)})
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def _private_kib_of_second(artifact: Path, cache: LayoutCache | None) -> int:
    """Private memory of the second of two processes that hold the model at once."""
    argv = [sys.executable, "-c", _CHILD, str(artifact)]
    argv += ["-", "-", "0"] if cache is None else [str(cache.folder), cache.artifact_sha256, "1"]
    children = []
    try:
        for _ in range(2):
            child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            children.append(child)
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
        rollup = Path(f"/proc/{children[1].pid}/smaps_rollup").read_text().splitlines()
        fields = {line.split(":")[0]: line.split()[1] for line in rollup[1:]}
        return int(fields["Private_Clean"]) + int(fields["Private_Dirty"])
    finally:
        for child in children:
            child.communicate("")


def test_processes_sharing_the_layout_map_its_weights_once(
    digits_mlp: Path, tmp_path: Path
) -> None:
    cache = _cache(digits_mlp, tmp_path)
    load_runtime(digits_mlp, settings=SHARE_ALL, layout=cache)  # derived before either starts
    weights_kib = digits_mlp.stat().st_size // 1024
    published = _private_kib_of_second(digits_mlp, None)
    shared = _private_kib_of_second(digits_mlp, cache)
    # As published, the second process holds its own copy of the weights; sharing the
    # layout, it holds about none of them.
    assert published - shared > 0.75 * weights_kib, (published, shared, weights_kib)


def test_processes_starting_together_derive_one_layout_and_share_it(
    digits_mlp: Path, tmp_path: Path
) -> None:
    cache = _cache(digits_mlp, tmp_path)
    argv = [sys.executable, "-c", _CHILD, str(digits_mlp), str(tmp_path), cache.artifact_sha256]
    children = [
        subprocess.Popen([*argv, "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    answers = [child.communicate("", timeout=120)[0] for child in children]
    assert answers == ["ready\n"] * 3
    layouts = [path.name for path in tmp_path.iterdir() if path.is_dir()]
    assert len(layouts) == 1, layouts  # and no scratch folder left behind
