"""``keel promote`` on real shadow evidence: it refuses, promotes, and records forced promotions."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from keel.logstore.records import CandidateStatus
from keel.registry import Registry
from shadow.shadow_traffic import (
    ModelPair,
    breast_cancer_pair,
    label_of,
    run_traffic,
    write_log,
)
from support import run_keel

MODEL = "breast-cancer"

# Two and a half hours of traffic pass these, and fail the defaults (a day, 1000 requests).
GOOD_ENOUGH = """
[shadow.promotion]
min_mirrored = 100
min_hours = 2
max_error_rate = 0.05
min_agreement = 0.9
max_p99_ratio = 1000
"""


def _one_in_fifty_fails(i: int) -> CandidateStatus:
    return CandidateStatus.ERROR if i % 50 == 7 else CandidateStatus.OK


@pytest.fixture(scope="module")
def published(demo_registry: Path) -> tuple[Path, ModelPair]:
    return demo_registry, breast_cancer_pair(Registry(demo_registry))


@pytest.fixture(scope="module")
def evidence(published: tuple[Path, ModelPair], tmp_path_factory: pytest.TempPathFactory) -> str:
    """150 mirrored requests over two and a half hours, 3 of them failed: a log URL."""
    _, cancer = published
    records = run_traffic(cancer, 150, status_of=_one_in_fifty_fails)
    return write_log(tmp_path_factory.mktemp("log") / "predictions.sqlite", records)


@pytest.fixture
def registry(published: tuple[Path, ModelPair], tmp_path: Path) -> Registry:
    """A private copy of the published registry, whose aliases a test may move."""
    copy = tmp_path / "registry"
    shutil.copytree(published[0], copy)
    return Registry(copy)


def _promote(registry: Registry, log_url: str, *extra: str) -> tuple[int, str, str]:
    result = run_keel("promote", MODEL, "--registry", registry.url, "--log-store", log_url, *extra)
    return result.returncode, result.stdout, result.stderr


def test_weak_evidence_is_refused_naming_each_failed_criterion(
    registry: Registry, evidence: str
) -> None:
    production = registry.aliases(MODEL)["production"]
    code, out, err = _promote(registry, evidence)
    assert code == 9, err
    assert "min_hours: needs >= 24 h, measured 2.48 h" in err
    assert "min_mirrored: needs >= 1000 requests, measured 150 requests" in err
    assert "max_error_rate: needs <= 0.001, measured 0.02" in err
    assert "max_drop_rate" not in err  # it passed
    assert "FAIL" in out
    assert registry.aliases(MODEL)["production"] == production


def test_good_evidence_moves_production_with_the_evidence_as_reason(
    registry: Registry, evidence: str, tmp_path: Path
) -> None:
    config = tmp_path / "keel.toml"
    config.write_text(GOOD_ENOUGH)
    candidate = registry.aliases(MODEL)["candidate"]
    code, out, err = _promote(registry, evidence, "--config", str(config), "-m", "ticket 42")
    assert code == 0, err
    assert registry.aliases(MODEL)["production"] == candidate
    assert f"{MODEL}@production → {candidate}" in out
    event = registry.alias_history(MODEL)[-1]
    assert event.alias == "production"
    assert event.version == candidate
    assert event.reason.startswith(f"promoted on shadow evidence for {label_of(candidate)}")
    assert "150 mirrored requests over 2.5 h" in event.reason
    assert "all 7 criteria met; ticket 42" in event.reason


def test_criteria_and_log_url_come_from_the_environment(
    registry: Registry, evidence: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "MIN_MIRRORED": "10",
        "MIN_HOURS": "0",
        "MAX_ERROR_RATE": "0.1",
        "MIN_AGREEMENT": "0.5",
        "MAX_P99_RATIO": "1000",
    }.items():
        monkeypatch.setenv(f"KEEL_SHADOW__PROMOTION__{key}", value)
    monkeypatch.setenv("KEEL_SHADOW__LOG__URL", evidence)
    result = run_keel("promote", MODEL, "--registry", registry.url)
    assert result.returncode == 0, result.stderr
    assert registry.aliases(MODEL)["production"] == registry.aliases(MODEL)["candidate"]


def test_force_without_a_reason_is_refused_before_anything_moves(
    registry: Registry, evidence: str
) -> None:
    production = registry.aliases(MODEL)["production"]
    code, _, err = _promote(registry, evidence, "--force")
    assert code == 2
    assert "--force needs --reason" in err
    assert registry.aliases(MODEL)["production"] == production


def test_force_with_a_reason_promotes_and_keeps_the_failures_in_history(
    registry: Registry, evidence: str
) -> None:
    candidate = registry.aliases(MODEL)["candidate"]
    code, _, err = _promote(registry, evidence, "--force", "--reason", "fixes outage INC-7")
    assert code == 0, err
    assert "forced" in err
    assert registry.aliases(MODEL)["production"] == candidate
    reason = registry.alias_history(MODEL)[-1].reason
    assert reason.startswith("forced: fixes outage INC-7; failed criteria: min_mirrored: needs")
    assert "min_hours: needs >= 24 h, measured 2.48 h" in reason
    assert "shadow evidence for" in reason


def test_a_candidate_the_registry_lacks_cannot_be_promoted(
    registry: Registry, published: tuple[Path, ModelPair], tmp_path: Path
) -> None:
    remote = dataclasses.replace(published[1], candidate_version="v3-on-another-server")
    log_url = write_log(tmp_path / "remote.sqlite", run_traffic(remote, 5))
    code, _, err = _promote(registry, log_url, "--force", "-m", "try")
    assert code == 7
    assert "v3-on-another-server" in err
    assert "must be published" in err


def test_promoting_the_current_production_changes_nothing(
    registry: Registry, published: tuple[Path, ModelPair], tmp_path: Path
) -> None:
    cancer = published[1]
    itself = dataclasses.replace(
        cancer, candidate=cancer.primary, candidate_version=cancer.primary_version
    )
    log_url = write_log(tmp_path / "same.sqlite", run_traffic(itself, 5))
    history = registry.alias_history(MODEL)
    code, out, err = _promote(registry, log_url, "--force", "-m", "no-op")
    assert code == 0, err
    assert "already" in out
    assert registry.alias_history(MODEL) == history
