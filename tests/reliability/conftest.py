"""Fixtures of the reliability suite: the models it serves, and the figures it measures."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from built_models import publish_log_of_input, publish_store_lookup, publish_wide_mlp
from figures import (
    DEFAULT_FUZZ_EXAMPLES,
    DEFAULT_OVERLOAD_SECONDS,
    FUZZ_EXAMPLES_VARIABLE,
    OVERLOAD_SECONDS_VARIABLE,
    RESULTS_VARIABLE,
    Figures,
)

from support import GIT

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fuzz_examples() -> int:
    """Examples per property-based test: a CI-sized default, more for the documented full run."""
    return int(os.environ.get(FUZZ_EXAMPLES_VARIABLE, DEFAULT_FUZZ_EXAMPLES))


@pytest.fixture(scope="session")
def overload_seconds() -> float:
    """How long the overload tests hold three times capacity: CI's default, or the full run's."""
    return float(os.environ.get(OVERLOAD_SECONDS_VARIABLE, DEFAULT_OVERLOAD_SECONDS))


@pytest.fixture(scope="session")
def figures(fuzz_examples: int, overload_seconds: float) -> Iterator[Figures]:
    """The session's figures, written where ``RELIABILITY_RESULTS`` says (if it is set)."""
    measured = Figures()
    started = time.monotonic()
    yield measured
    target = os.environ.get(RESULTS_VARIABLE)
    if target is None:
        return
    measured.run.update(
        fuzz_examples=fuzz_examples,
        overload_seconds=overload_seconds,
        finished_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        duration_s=round(time.monotonic() - started, 1),
        keel_commit=_commit(),
    )
    measured.write(Path(target))


@pytest.fixture(scope="session")
def wide_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding ``wide-mlp@production``, a model whose cost is its own compute."""
    scratch = tmp_path_factory.mktemp("wide-mlp")
    publish_wide_mlp(scratch / "registry", scratch)
    return scratch / "registry"


@pytest.fixture(scope="session")
def lookup_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding ``store-lookup@production``, which fails at run time on unknown ids."""
    scratch = tmp_path_factory.mktemp("store-lookup")
    publish_store_lookup(scratch / "registry", scratch)
    return scratch / "registry"


@pytest.fixture(scope="session")
def log_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding ``log-of-input@production``, which answers NaN for negative input."""
    scratch = tmp_path_factory.mktemp("log-of-input")
    publish_log_of_input(scratch / "registry", scratch)
    return scratch / "registry"


def _commit() -> str:
    result = subprocess.run(
        [GIT, "rev-parse", "--short", "HEAD"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"
