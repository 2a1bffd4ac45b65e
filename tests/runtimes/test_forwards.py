"""Resolving forward implementations: built in, or from installed packages' entry points."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from keel.errors import RuntimeFailure
from keel.runtimes import known_forwards, load_runtime
from keel.runtimes.forwards import ENTRY_POINT_GROUP, resolve_forward
from keel.runtimes.numpy_mlp import NUMPY_MLP
from keel.runtimes.torch_mlp import TORCH_MLP

PLUGIN_MODULE = "keel_forward_plugin_for_tests"
PLUGIN_SOURCE = textwrap.dedent(
    """
    from keel.runtimes import ForwardPass, TensorSpec


    class Doubler:
        def build(self, weights, config):
            scale = weights["scale"]
            return ForwardPass(
                inputs=(TensorSpec("x", "float32", (None,)),),
                outputs=(TensorSpec("y", "float32", (None,)),),
                run=lambda inputs: {"y": inputs["x"] * scale},
            )


    DOUBLER = Doubler()
    NOT_A_FORWARD = object()
    """
)

Installer = Callable[[str, dict[str, str]], None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Installer]:
    """Install real distributions (a dist-info folder and a module) on sys.path."""
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(site))

    def install_distribution(name: str, forwards: dict[str, str]) -> None:
        info = site / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        lines = [f"{forward} = {target}" for forward, target in forwards.items()]
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n" + "\n".join(lines))

    yield install_distribution
    sys.modules.pop(PLUGIN_MODULE, None)


def test_numpy_mlp_is_built_in() -> None:
    assert resolve_forward("numpy-mlp") is NUMPY_MLP
    assert "numpy-mlp" in known_forwards()


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(RuntimeFailure, match=r"unknown forward implementation 'resnet'.*numpy-mlp"):
        resolve_forward("resnet")


def test_installed_package_adds_a_forward(install: Installer, tmp_path: Path) -> None:
    install("doubler_pkg", {"doubler": f"{PLUGIN_MODULE}:DOUBLER"})
    assert "doubler" in known_forwards()
    path = tmp_path / "model.safetensors"
    save_file({"scale": np.array(2.0, dtype=np.float32)}, str(path))
    runtime = load_runtime(path, forward="doubler")
    np.testing.assert_array_equal(runtime.predict({"x": np.array([1.5], np.float32)})["y"], [3.0])


def test_entry_point_may_name_a_class(install: Installer) -> None:
    install("doubler_pkg", {"doubler": f"{PLUGIN_MODULE}:Doubler"})
    assert type(resolve_forward("doubler")).__name__ == "Doubler"


@pytest.mark.parametrize(("name", "builtin"), [("numpy-mlp", NUMPY_MLP), ("torch-mlp", TORCH_MLP)])
def test_installed_package_cannot_replace_a_built_in(
    install: Installer, name: str, builtin: object
) -> None:
    install("impostor", {name: f"{PLUGIN_MODULE}:DOUBLER"})
    assert resolve_forward(name) is builtin


def test_name_installed_twice_is_refused(install: Installer) -> None:
    install("first", {"doubler": f"{PLUGIN_MODULE}:DOUBLER"})
    install("second", {"doubler": f"{PLUGIN_MODULE}:Doubler"})
    with pytest.raises(RuntimeFailure, match="installed more than once"):
        resolve_forward("doubler")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (f"{PLUGIN_MODULE}:Missing", "could not be imported"),
        ("no_such_module_for_keel:Forward", "could not be imported"),
        (f"{PLUGIN_MODULE}:NOT_A_FORWARD", r"has no build\(weights, config\) method"),
    ],
)
def test_broken_entry_point_is_a_runtime_failure(
    install: Installer, target: str, message: str
) -> None:
    install("broken", {"broken": target})
    with pytest.raises(RuntimeFailure, match=message):
        resolve_forward("broken")
