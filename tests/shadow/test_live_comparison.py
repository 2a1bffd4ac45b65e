"""The mirror's live gauges judge rows exactly as the report does, on real model pairs."""

from __future__ import annotations

import pytest

from keel.shadow.live_comparison import LIVE_ROWS, LiveComparison
from keel.shadow.report import build_report
from shadow.shadow_traffic import ModelPair, run_traffic

TOLERANCE = 0.05


# The server always knows its outputs from the signature, as these pairs do.
@pytest.mark.parametrize("pair_name", ["cancer", "digits"])
def test_live_agreement_and_differences_equal_the_reports(
    pair_name: str, request: pytest.FixtureRequest
) -> None:
    pair: ModelPair = request.getfixturevalue(pair_name)
    # Fewer rows than the live window holds, so both see the same rows.
    records = run_traffic(pair, LIVE_ROWS // 4, rows_per_request=3)
    live = LiveComparison(TOLERANCE)
    for record in records:
        assert record.candidate_output is not None
        live.add(pair.outputs, record.primary_output, record.candidate_output)
    report = build_report(records, outputs=pair.outputs, score_tolerance=TOLERANCE).to_dict()

    assert live.rows_compared == 3 * len(records)
    assert live.rows_agreeing / live.rows_compared == pytest.approx(report["agreement"])
    assert live.agreement() == pytest.approx(report["agreement"])
    floats = {n: o for n, o in report["outputs"].items() if o["compared_as"] == "score"}
    assert set(live.mean_differences()) == set(floats)
    for name, output in floats.items():
        assert live.mean_differences()[name] == pytest.approx(output["mean_abs_diff"])


def test_a_candidate_with_another_output_shape_disagrees_on_every_row(cancer: ModelPair) -> None:
    (record,) = run_traffic(cancer, 1, rows_per_request=4)
    assert record.candidate_output is not None
    reshaped = {**record.candidate_output, "probabilities": record.candidate_output["label"]}
    live = LiveComparison(TOLERANCE)
    live.add(cancer.outputs, record.primary_output, reshaped)
    assert (live.rows_compared, live.rows_agreeing) == (4, 0)


@pytest.mark.parametrize("pair_name", ["cancer", "digits"])
def test_pairs_judged_together_give_the_figures_of_pairs_judged_one_at_a_time(
    pair_name: str, request: pytest.FixtureRequest
) -> None:
    pair: ModelPair = request.getfixturevalue(pair_name)
    # More rows than the window holds, requests of one and of three rows, and now
    # and then a candidate answering another shape, which is judged alone.
    records = run_traffic(pair, 300, rows_per_request=1) + run_traffic(pair, 300)
    together, one_at_a_time = LiveComparison(TOLERANCE), LiveComparison(TOLERANCE)
    for i, record in enumerate(records):
        candidate = record.candidate_output
        assert candidate is not None
        if i % 37 == 0:
            first = pair.outputs[0].name
            candidate = {**candidate, first: candidate[first][:0]}
        together.add(pair.outputs, record.primary_output, candidate)
        one_at_a_time.add(pair.outputs, record.primary_output, candidate)
        # A read judges what is waiting: this one never has more than one pair waiting.
        one_at_a_time.agreement()

    assert together.rows_compared == one_at_a_time.rows_compared == 300 + 3 * 300
    assert together.rows_agreeing == one_at_a_time.rows_agreeing
    assert together.agreement() == one_at_a_time.agreement()
    assert together.mean_differences() == pytest.approx(one_at_a_time.mean_differences())
    assert together.mean_differences()
