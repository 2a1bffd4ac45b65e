"""The shadow report over real models' outputs, checked against numpy computed independently."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

from keel.errors import AmbiguousVersion, KeelError
from keel.logstore.records import CandidateInfo, CandidateStatus, PredictionRecord
from keel.shadow.report import build_report
from shadow.shadow_traffic import START, ModelPair, run_traffic, stacked

REPORT_KEYS = {
    "model",
    "candidate_version",
    "primary_versions",
    "from",
    "to",
    "duration_s",
    "requests",
    "rates",
    "agreement",
    "outputs",
    "psi",
    "latency_ms",
    "candidate_rss_bytes",
    "disagreements",
}


def _statuses(i: int) -> CandidateStatus:
    """A mix of every outcome, in a pattern the tests can count independently."""
    if i % 10 == 3:
        return CandidateStatus.ERROR
    if i % 10 == 6:
        return CandidateStatus.TIMEOUT
    if i % 20 == 9:
        return CandidateStatus.DROPPED
    if i % 25 == 12:
        return CandidateStatus.UNMIRRORED
    return CandidateStatus.OK


def test_report_json_has_the_documented_shape(cancer: ModelPair) -> None:
    records = run_traffic(cancer, 40)
    document = build_report(records, outputs=cancer.outputs).to_dict()
    assert set(document) >= REPORT_KEYS
    assert set(document["requests"]) == {
        "logged",
        "mirrored",
        "ok",
        "error",
        "timeout",
        "dropped",
        "unmirrored",
    }
    assert set(document["rates"]) == {"error", "timeout", "drop"}
    assert set(document["latency_ms"]) == {"primary", "candidate"}
    assert set(document["latency_ms"]["primary"]) == {"p50", "p99"}
    assert set(document["outputs"]) == {"label", "probabilities"}
    assert document["from"] == "2025-03-01T00:00:00.000Z"
    assert document["to"] == "2025-03-01T00:39:00.000Z"
    # Strict JSON: no NaN or Infinity tokens anywhere.
    assert json.loads(json.dumps(document, allow_nan=False)) == document


def test_counts_rates_and_span_follow_the_candidate_statuses(cancer: ModelPair) -> None:
    records = run_traffic(cancer, 200, status_of=_statuses, spacing_s=30.0)
    report = build_report(records, outputs=cancer.outputs)
    statuses = [_statuses(i) for i in range(200)]
    expected = {s.value: statuses.count(s) for s in CandidateStatus}
    mirrored = expected["ok"] + expected["error"] + expected["timeout"]
    document = report.to_dict()
    assert document["requests"] == {"logged": 200, "mirrored": mirrored, **expected}
    assert document["rates"]["error"] == pytest.approx(expected["error"] / mirrored)
    assert document["rates"]["timeout"] == pytest.approx(expected["timeout"] / mirrored)
    assert document["rates"]["drop"] == pytest.approx(
        expected["dropped"] / (mirrored + expected["dropped"])
    )
    assert document["duration_s"] == pytest.approx(199 * 30.0)
    mirrored_times = [
        START + i * 30.0 for i, s in enumerate(statuses) if s.value in ("ok", "error", "timeout")
    ]
    assert report.mirrored_span_s == pytest.approx(max(mirrored_times) - min(mirrored_times))
    assert all(o["rows"] == expected["ok"] * 3 for o in document["outputs"].values())


def test_label_agreement_and_confusion_match_numpy(cancer: ModelPair) -> None:
    records = run_traffic(cancer, 120, status_of=_statuses)
    label = build_report(records, outputs=cancer.outputs).to_dict()["outputs"]["label"]
    primary = stacked(records, "primary", "label")
    candidate = stacked(records, "candidate", "label")
    confusion = np.zeros((2, 2), dtype=int)
    np.add.at(confusion, (primary, candidate), 1)
    assert label["agreement"] == pytest.approx(np.mean(primary == candidate))
    assert 0.8 < label["agreement"] < 1.0  # two different models: close, not identical
    assert label["categories"] == [0, 1]
    assert label["names"] == ["malignant", "benign"]
    assert label["confusion"] == confusion.tolist()


def test_float_differences_and_correlation_match_numpy(cancer: ModelPair) -> None:
    records = run_traffic(cancer, 120)
    entry = build_report(records, outputs=cancer.outputs).to_dict()["outputs"]["probabilities"]
    primary = stacked(records, "primary", "probabilities").astype(np.float64)
    candidate = stacked(records, "candidate", "probabilities").astype(np.float64)
    difference = np.abs(primary - candidate)
    assert entry["kind"] == "probability"
    assert entry["width"] == 2
    assert entry["mean_abs_diff"] == pytest.approx(difference.mean())
    assert entry["p99_abs_diff"] == pytest.approx(np.percentile(difference, 99))
    assert entry["max_abs_diff"] == pytest.approx(difference.max())
    expected = [np.corrcoef(primary[:, j], candidate[:, j])[0, 1] for j in range(2)]
    assert entry["correlation"] == pytest.approx(expected)
    assert entry["agreement"] == pytest.approx(np.mean(difference.max(axis=1) <= 0.05))


def test_ten_class_confusion_matches_numpy(digits: ModelPair) -> None:
    records = run_traffic(digits, 150, rows_per_request=3)
    document = build_report(records, outputs=digits.outputs).to_dict()
    primary = stacked(records, "primary", "label")
    candidate = stacked(records, "candidate", "label")
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (primary, candidate), 1)
    label = document["outputs"]["label"]
    assert label["confusion"] == confusion.tolist()
    assert label["names"] == [str(d) for d in range(10)]
    # The report's agreement is the label output's, though probabilities come first.
    assert document["agreement"] == pytest.approx(np.mean(primary == candidate))
    assert len(document["outputs"]["probabilities"]["correlation"]) == 10


def test_without_a_label_agreement_is_the_share_of_rows_within_tolerance(
    digit_scores: ModelPair,
) -> None:
    records = run_traffic(digit_scores, 100, rows_per_request=4)
    primary = stacked(records, "primary", "prediction").astype(np.float64)
    candidate = stacked(records, "candidate", "prediction").astype(np.float64)
    worst = np.abs(primary - candidate).max(axis=1)
    tolerance = float(np.median(worst))
    report = build_report(records, score_tolerance=tolerance)
    document = report.to_dict()
    assert document["outputs"]["prediction"]["kind"] == "score"  # from the float dtype
    assert document["agreement"] == pytest.approx(np.mean(worst <= tolerance))
    assert 0.3 < document["agreement"] < 0.7
    # Every listed disagreement is a row beyond the tolerance, largest first.
    sizes = [d["difference"] for d in document["disagreements"]]
    assert sizes == sorted(sizes, reverse=True)
    assert min(sizes) > tolerance
    assert max(sizes) == pytest.approx(worst.max())


def test_identical_outputs_give_zero_psi_and_full_agreement(cancer: ModelPair) -> None:
    same = dataclasses.replace(cancer, candidate=cancer.primary)
    document = build_report(run_traffic(same, 80), outputs=cancer.outputs).to_dict()
    assert document["psi"] == {"label": 0.0, "probabilities": 0.0}
    assert document["agreement"] == 1.0
    probabilities = document["outputs"]["probabilities"]
    assert probabilities["mean_abs_diff"] == 0.0
    assert probabilities["correlation"] == pytest.approx([1.0, 1.0])
    assert document["disagreements"] == []


def test_psi_is_positive_when_the_candidate_shifts_its_outputs(cancer: ModelPair) -> None:
    document = build_report(run_traffic(cancer, 120), outputs=cancer.outputs).to_dict()
    # Boosting spreads probabilities the logistic regression pushes to 0 and 1.
    assert document["psi"]["probabilities"] > 0.1
    assert document["psi"]["label"] > 0.0


def test_constant_outputs_report_no_correlation_and_warn_nothing(cancer: ModelPair) -> None:
    one_row = {name: values[:1] for name, values in cancer.inputs.items()}
    constant = dataclasses.replace(cancer, inputs=one_row)
    records = run_traffic(constant, 20, rows_per_request=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        document = build_report(records, outputs=cancer.outputs).to_dict()
    assert document["outputs"]["probabilities"]["correlation"] == [None, None]


def test_latency_percentiles_cover_mirrored_primary_and_answered_candidate(
    cancer: ModelPair,
) -> None:
    records = run_traffic(cancer, 200, status_of=_statuses)
    latency = build_report(records, outputs=cancer.outputs).to_dict()["latency_ms"]
    mirrored = [r.primary_ms for r in records if r.status.value in ("ok", "error", "timeout")]
    answered = [r.candidate_ms for r in records if r.status is CandidateStatus.OK]
    assert latency["primary"]["p50"] == pytest.approx(np.percentile(mirrored, 50))
    assert latency["primary"]["p99"] == pytest.approx(np.percentile(mirrored, 99))
    assert latency["candidate"]["p99"] == pytest.approx(np.percentile(answered, 99))


def test_candidate_memory_is_the_latest_start_of_that_version(cancer: ModelPair) -> None:
    def started(version: str, at: float, rss: int | None) -> CandidateInfo:
        return CandidateInfo(cancer.model, version, "in-process", at, rss_bytes=rss)

    infos = [
        started(cancer.candidate_version, START, 10_000_000),
        started(cancer.candidate_version, START + 60, 12_000_000),
        started(cancer.candidate_version, START + 90, None),  # a remote restart
        started("other-version", START + 120, 99_000_000),
    ]
    report = build_report(run_traffic(cancer, 10), infos, outputs=cancer.outputs)
    assert report.to_dict()["candidate_rss_bytes"] == 12_000_000
    assert build_report(run_traffic(cancer, 10)).to_dict()["candidate_rss_bytes"] is None


def test_the_latest_candidate_is_the_default_and_a_prefix_selects_another(
    cancer: ModelPair,
) -> None:
    older = dataclasses.replace(cancer, candidate_version="aaa111-20250101T000000.000000Z")
    newer = dataclasses.replace(cancer, candidate_version="aaa222-20250201T000000.000000Z")
    records = run_traffic(older, 10) + run_traffic(newer, 10, start=START + 3600)
    assert build_report(records).candidate_version == newer.candidate_version
    chosen = build_report(records, candidate_version="aaa111")
    assert chosen.candidate_version == older.candidate_version
    assert chosen.counts.logged == 10
    # The registry's spelling (sha/timestamp) finds the version the server logged.
    assert build_report(records, candidate_version="aaa111/2025").counts.logged == 10
    with pytest.raises(AmbiguousVersion, match=r"aaa111.*aaa222"):
        build_report(records, candidate_version="aaa")
    with pytest.raises(KeelError, match=r"no records for candidate 'bbb'.*aaa222"):
        build_report(records, candidate_version="bbb")


def test_unmirrored_records_without_a_candidate_count_within_its_span(cancer: ModelPair) -> None:
    mirrored = run_traffic(cancer, 10, start=START + 600)

    def sampled_out(at: float, request: str) -> PredictionRecord:
        return dataclasses.replace(
            mirrored[0],
            at=at,
            request_id=request,
            candidate_version=None,
            status=CandidateStatus.UNMIRRORED,
            candidate_output=None,
            candidate_ms=None,
        )

    inside = sampled_out(START + 700, "inside")
    outside = sampled_out(START, "before")
    report = build_report([outside, *mirrored, inside])
    assert report.counts.unmirrored == 1
    assert report.counts.logged == 11


def test_disagreements_are_the_largest_first_with_their_inputs(cancer: ModelPair) -> None:
    records = run_traffic(cancer, 120)
    report = build_report(records, outputs=cancer.outputs, top=5)
    by_id = {r.request_id: r for r in records}
    listed = report.to_dict()["disagreements"]
    assert len(listed) == 5
    assert [d["difference"] for d in listed] == sorted(
        (d["difference"] for d in listed), reverse=True
    )
    for item in listed:
        record = by_id[item["request_id"]]
        row = item["row"]
        assert record.candidate_output is not None
        primary = record.primary_output["probabilities"][row].astype(np.float64)
        candidate = record.candidate_output["probabilities"][row].astype(np.float64)
        assert item["difference"] == pytest.approx(np.abs(primary - candidate).max())
        assert item["outputs"]["label"]["primary"] != item["outputs"]["label"]["candidate"]
        assert item["outputs"]["label"]["primary"] == int(record.primary_output["label"][row])
        assert item["input"]["input"] == pytest.approx(record.inputs["input"][row].tolist())
        assert item["input_hash"] == record.input_hash
    assert report.to_dict()["disagreements"][0]["at"].endswith("Z")


def test_a_candidate_without_the_primarys_outputs_is_reported_not_compared(
    digits: ModelPair, digit_scores: ModelPair
) -> None:
    mismatched = dataclasses.replace(digits, candidate=digit_scores.candidate)
    document = build_report(run_traffic(mismatched, 10), outputs=digits.outputs).to_dict()
    assert (
        "the candidate gave no 'probabilities'" in document["outputs"]["probabilities"]["problem"]
    )
    assert document["outputs"]["label"]["rows"] == 0
    assert document["agreement"] is None
    assert document["disagreements"] == []


def test_an_empty_log_is_a_clear_error(cancer: ModelPair) -> None:
    with pytest.raises(KeelError, match="holds no records"):
        build_report([])
    with pytest.raises(KeelError, match="no records of model 'churn'"):
        build_report(run_traffic(cancer, 3), model="churn")


def test_a_log_without_a_candidate_says_shadowing_is_off(cancer: ModelPair) -> None:
    unmirrored = [
        dataclasses.replace(
            r,
            candidate_version=None,
            status=CandidateStatus.UNMIRRORED,
            candidate_output=None,
            candidate_ms=None,
        )
        for r in run_traffic(cancer, 5)
    ]
    with pytest.raises(
        KeelError, match="no logged request of breast-cancer names a candidate version: is a shadow"
    ):
        build_report(unmirrored)


def test_an_ok_record_without_candidate_output_is_named(cancer: ModelPair) -> None:
    records = run_traffic(cancer, 5)
    records[2] = dataclasses.replace(records[2], candidate_output=None)
    with pytest.raises(KeelError, match=r"'req-00002'.*holds no candidate output"):
        build_report(records)


def test_records_of_several_models_need_a_model_name(cancer: ModelPair, digits: ModelPair) -> None:
    records = run_traffic(cancer, 5) + run_traffic(digits, 5)
    with pytest.raises(KeelError, match="several models"):
        build_report(records)
    assert build_report(records, model=digits.model).counts.logged == 5
