"""Fixtures for the shadow report tests: real model pairs, loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.registry import Registry
from shadow.shadow_traffic import ModelPair, breast_cancer_pair, digits_pair


@pytest.fixture(scope="session")
def cancer(demo_registry: Path) -> ModelPair:
    """Logistic regression (production) against gradient boosting (candidate)."""
    return breast_cancer_pair(Registry(demo_registry))


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> ModelPair:
    """The digits MLP (probabilities and label) against a copy with perturbed weights."""
    return digits_pair(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def digit_scores(tmp_path_factory: pytest.TempPathFactory) -> ModelPair:
    """The same two MLPs with an identity head: float scores only, no label output."""
    folder: Path = tmp_path_factory.mktemp("digit-scores")
    return digits_pair(folder, output="identity", noise=0.02)
