"""The main job end to end: ``keel demo --no-serve`` trains, publishes and verifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import run_keel

pytestmark = pytest.mark.integration


def test_demo_publishes_and_verifies_the_examples_then_skips_them(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    first = run_keel("demo", "--no-serve", "--registry", str(registry))
    assert first.returncode == 0, first.stdout + first.stderr
    listing = {
        m["name"]: m
        for m in json.loads(
            run_keel("models", "list", "--json", "--registry", str(registry)).stdout
        )
    }
    assert set(listing) == {"breast-cancer", "digits-mlp"}
    assert set(listing["breast-cancer"]["aliases"]) == {"production", "candidate"}
    assert len(listing["breast-cancer"]["versions"]) == 2
    assert set(listing["digits-mlp"]["aliases"]) == {"production"}
    digits = json.loads(
        run_keel("models", "show", "digits-mlp", "--json", "--registry", str(registry)).stdout
    )
    assert digits["artifact"]["format"] == "safetensors"
    assert digits["artifact"]["forward"] == "numpy-mlp"
    assert digits["training"]["metrics"]["accuracy"] > 0.9
    cancer = json.loads(
        run_keel(
            "models", "show", "breast-cancer@candidate", "--json", "--registry", str(registry)
        ).stdout
    )
    assert cancer["training"]["params"]["algorithm"] == "gradient_boosting"
    assert cancer["training"]["metrics"]["roc_auc"] > 0.95
    second = run_keel("demo", "--no-serve", "--registry", str(registry))
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("already published") == 3
    assert (
        len(
            json.loads(run_keel("models", "list", "--json", "--registry", str(registry)).stdout)[0][
                "versions"
            ]
        )
        == 2
    )
