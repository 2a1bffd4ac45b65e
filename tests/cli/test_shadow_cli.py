"""``keel shadow report`` run as a user runs it, on a real SQLite log and a real registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st

from keel.cli.shadow import parse_moment
from keel.logstore.records import CandidateInfo, CandidateStatus, PredictionRecord
from keel.registry import Registry
from keel.shadow.display import percent
from keel.shadow.report import build_report
from shadow.shadow_traffic import (
    START,
    ModelPair,
    breast_cancer_pair,
    run_traffic,
    write_log,
)
from support import run_keel

RSS = 50 * 2**20


def _statuses(i: int) -> CandidateStatus:
    if i % 40 == 7:
        return CandidateStatus.ERROR
    if i % 50 == 9:
        return CandidateStatus.TIMEOUT
    return CandidateStatus.OK


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shadow-cli")


@pytest.fixture(scope="module")
def cancer(demo_registry: Path) -> ModelPair:
    return breast_cancer_pair(Registry(demo_registry))


@pytest.fixture(scope="module")
def records(cancer: ModelPair) -> list[PredictionRecord]:
    """150 requests a minute apart from 2025-03-01T00:00Z: two and a half hours."""
    return run_traffic(cancer, 150, status_of=_statuses)


@pytest.fixture(scope="module")
def log_url(folder: Path, cancer: ModelPair, records: list[PredictionRecord]) -> str:
    started = CandidateInfo(cancer.model, cancer.candidate_version, "in-process", START, RSS)
    return write_log(folder / "predictions.sqlite", records, [started])


def _report(log_url: str, registry: Path, *extra: str) -> tuple[int, str, str]:
    result = run_keel(
        "shadow",
        "report",
        "breast-cancer",
        "--log-store",
        log_url,
        "--registry",
        str(registry),
        *extra,
    )
    return result.returncode, result.stdout, result.stderr


def test_report_prints_the_figures_and_the_verdict(
    log_url: str, demo_registry: Path, cancer: ModelPair, records: list[PredictionRecord]
) -> None:
    code, out, err = _report(log_url, demo_registry)
    assert code == 0, err
    assert "Shadow report of breast-cancer" in out
    assert percent(build_report(records, outputs=cancer.outputs).agreement) in out
    assert "50.0 MiB" in out
    assert "Largest disagreements (10)" in out
    assert "min_hours" in out
    assert "FAIL" in out


def test_json_is_the_report_of_the_logged_records(
    log_url: str, demo_registry: Path, cancer: ModelPair, records: list[PredictionRecord]
) -> None:
    code, out, err = _report(log_url, demo_registry, "--json", "--top", "3")
    assert code == 0, err
    document = json.loads(out)
    expected = build_report(records, outputs=cancer.outputs, top=3).to_dict()
    assert set(document) == set(expected)
    for key in ("model", "candidate_version", "primary_versions", "from", "to", "requests"):
        assert document[key] == expected[key], key
    assert document["rates"] == pytest.approx(expected["rates"])
    assert document["agreement"] == pytest.approx(expected["agreement"])
    assert document["outputs"]["label"]["confusion"] == expected["outputs"]["label"]["confusion"]
    assert document["outputs"]["probabilities"]["kind"] == "probability"  # from the registry
    assert document["psi"] == pytest.approx(expected["psi"])
    assert document["candidate_rss_bytes"] == RSS
    assert [d["request_id"] for d in document["disagreements"]] == [
        d["request_id"] for d in expected["disagreements"]
    ]


def test_html_is_written_beside_the_table(
    log_url: str, demo_registry: Path, tmp_path: Path
) -> None:
    page = tmp_path / "shadow.html"
    code, out, err = _report(log_url, demo_registry, "--html", str(page))
    assert code == 0, err
    assert "Shadow report of breast-cancer" in out
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") == 5
    assert "Promotion verdict" in html


def test_since_and_until_select_a_window(log_url: str, demo_registry: Path) -> None:
    code, out, err = _report(
        log_url,
        demo_registry,
        "--json",
        "--since",
        "2025-03-01T01:00:00Z",
        "--until",
        "2025-03-01T02:00",
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["requests"]["logged"] == 60
    assert document["from"] == "2025-03-01T01:00:00.000Z"
    assert document["to"] == "2025-03-01T01:59:00.000Z"


def test_a_window_with_no_records_is_a_clear_error(log_url: str, demo_registry: Path) -> None:
    code, _, err = _report(log_url, demo_registry, "--since", "24h")
    assert code == 1
    assert "no records of model 'breast-cancer'" in err


def test_a_time_that_is_neither_iso_nor_a_duration_is_a_usage_error(
    log_url: str, demo_registry: Path
) -> None:
    code, _, err = _report(log_url, demo_registry, "--since", "yesterday")
    assert code == 2
    assert "--since" in err
    assert "ISO 8601" in err


def test_a_missing_log_file_is_named(demo_registry: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.sqlite"
    code, _, err = _report(f"sqlite:///{missing}", demo_registry)
    assert code == 1
    assert f"{missing} does not exist" in err
    assert not missing.exists()


def test_an_unknown_candidate_lists_the_logged_ones(
    log_url: str, demo_registry: Path, cancer: ModelPair
) -> None:
    code, _, err = _report(log_url, demo_registry, "--candidate", "0000000")
    assert code == 1
    assert "no records for candidate '0000000'" in err
    assert cancer.candidate_version in err


def test_without_the_registry_kinds_come_from_dtypes(log_url: str, tmp_path: Path) -> None:
    result = run_keel(
        "shadow",
        "report",
        "breast-cancer",
        "--json",
        "--log-store",
        log_url,
        "--registry",
        str(tmp_path / "empty"),
    )
    assert result.returncode == 0, result.stderr
    assert "output kinds are inferred from their dtypes" in result.stderr
    outputs = json.loads(result.stdout)["outputs"]
    assert outputs["probabilities"]["kind"] == "score"
    assert outputs["label"]["kind"] == "label"


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 1, 1)))
def test_iso_times_parse_to_their_instant(moment: datetime) -> None:
    aware = moment.replace(tzinfo=UTC)
    assert parse_moment(aware.isoformat(), 0.0, "--since") == aware.timestamp()
    # A time without a zone is UTC.
    assert parse_moment(moment.isoformat(), 0.0, "--since") == aware.timestamp()


@given(st.integers(0, 10_000), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_durations_count_back_from_now(amount: int, unit: str) -> None:
    seconds = timedelta(
        **{
            "s": {"seconds": amount},
            "m": {"minutes": amount},
            "h": {"hours": amount},
            "d": {"days": amount},
            "w": {"weeks": amount},
        }[unit]
    ).total_seconds()
    assert parse_moment(f"{amount}{unit}", 1e9, "--since") == 1e9 - seconds


@given(st.text(max_size=40))
def test_any_text_parses_or_is_a_usage_error(text: str) -> None:
    outcome: object
    try:
        outcome = parse_moment(text, 1e9, "--since")
    except typer.BadParameter as exc:
        outcome = exc.param_hint
    assert isinstance(outcome, float) or outcome == "--since"
