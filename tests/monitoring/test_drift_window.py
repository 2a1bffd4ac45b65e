"""Drift windows on real traffic: the breast-cancer model's held-out split against its training
split, shifted, nulled and collapsed on purpose."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from monitoring_support import Traffic, held_out_traffic

from keel.errors import KeelError
from keel.monitoring.snapshot import DriftSnapshot, worst_first
from keel.monitoring.window import DriftWindow
from keel.reference import NumericStats
from keel.registry import Registry
from keel.settings import DriftSettings, DriftThresholds
from support import OnnxModel

# The held-out split has 143 rows: windows judged from 100 rows let each row count once.
SMALL = DriftSettings(window_rows=1000, block_rows=100, min_rows=100)
SHIFTED = "mean_radius"


@pytest.fixture(scope="module")
def traffic(breast_cancer_model: OnnxModel, tmp_path_factory: pytest.TempPathFactory) -> Traffic:
    return held_out_traffic(breast_cancer_model, tmp_path_factory.mktemp("drift"))


def _observe(window: DriftWindow, traffic: Traffic, batch: int = 64) -> DriftSnapshot:
    for features, predictions in traffic.batches(batch):
        window.observe(features, predictions)
    return window.snapshot()


def _shifted(traffic: Traffic, name: str = SHIFTED) -> Traffic:
    stats = traffic.metadata.reference.features[name]  # type: ignore[union-attr]
    assert isinstance(stats, NumericStats)
    assert stats.std is not None
    return traffic.with_feature(name, traffic.features[name] + 2 * stats.std)


def _statuses(snapshot: DriftSnapshot) -> dict[str, int]:
    return {c.name: c.status for c in [*snapshot.features, *snapshot.predictions]}


def test_held_out_traffic_is_ok_on_every_column(traffic: Traffic) -> None:
    snapshot = _observe(DriftWindow.for_model(traffic.metadata, SMALL), traffic)
    assert not snapshot.insufficient
    assert snapshot.rows == traffic.rows == 143
    assert set(_statuses(snapshot).values()) == {0}
    assert all(c.test == "ks" and c.p_value is not None for c in snapshot.features)
    assert not any(c.null_spike for c in snapshot.features)
    label = next(c for c in snapshot.predictions if c.name == "label")
    assert label.test == "chi2"
    assert not any(c.collapsed for c in snapshot.predictions)
    # A confident classifier: mean entropy well below ln 2, once for its one probability
    # output (not once per class column, nor for the label).
    assert set(snapshot.entropy) == {"probabilities"}
    assert 0.0 < snapshot.entropy["probabilities"] < 0.3


def test_a_feature_shifted_by_two_std_alerts_on_that_feature_only(traffic: Traffic) -> None:
    snapshot = _observe(DriftWindow.for_model(traffic.metadata, SMALL), _shifted(traffic))
    features = {c.name: c for c in snapshot.features}
    assert features[SHIFTED].status == 2
    assert (features[SHIFTED].psi or 0.0) > 1.0
    assert (features[SHIFTED].p_value or 1.0) < 1e-6
    assert {n: c.status for n, c in features.items() if n != SHIFTED} == dict.fromkeys(
        set(features) - {SHIFTED}, 0
    )
    assert worst_first(snapshot)[0].name == SHIFTED
    assert snapshot.status == 2


def test_nulls_in_a_feature_trip_the_null_spike(traffic: Traffic) -> None:
    values = traffic.features["mean_texture"].copy()
    values[::3] = np.nan
    snapshot = _observe(
        DriftWindow.for_model(traffic.metadata, SMALL),
        traffic.with_feature("mean_texture", values),
    )
    features = {c.name: c for c in snapshot.features}
    texture = features["mean_texture"]
    assert texture.null_rate == pytest.approx(48 / 143)
    assert texture.reference_null_rate == 0.0
    assert texture.null_spike
    assert texture.status == 2
    assert texture.values == 143 - 48
    assert not any(c.null_spike for n, c in features.items() if n != "mean_texture")


def test_a_few_nulls_are_not_a_spike(traffic: Traffic) -> None:
    values = traffic.features["mean_texture"].copy()
    values[:5] = np.nan
    snapshot = _observe(
        DriftWindow.for_model(traffic.metadata, SMALL),
        traffic.with_feature("mean_texture", values),
    )
    texture = next(c for c in snapshot.features if c.name == "mean_texture")
    assert texture.null_rate == pytest.approx(5 / 143)
    assert not texture.null_spike
    assert texture.status == 0


def test_constant_predictions_trip_collapse_within_the_recent_sample(traffic: Traffic) -> None:
    window = DriftWindow.for_model(traffic.metadata)
    before = _observe(window, traffic.bootstrap(1000, seed=1))
    assert not any(c.collapsed for c in before.predictions)
    rows = window.settings.collapse_rows
    stuck = traffic.bootstrap(rows, seed=2).with_predictions(
        label=np.ones(rows, dtype=np.int64),
        **{
            "probabilities[malignant]": np.full(rows, 0.5, dtype=np.float32),
            "probabilities[benign]": np.full(rows, 0.5, dtype=np.float32),
        },
    )
    after = _observe(window, stuck)
    assert after.rows == 1000 + rows
    for column in after.predictions:
        assert column.collapsed, column
        assert column.status == 2
        assert column.reasons[-1].startswith("recent")


def test_predictions_stuck_near_one_value_collapse_too(traffic: Traffic) -> None:
    window = DriftWindow.for_model(traffic.metadata)
    rows = 2 * window.settings.collapse_rows
    jitter = np.random.default_rng(3).normal(0, 1e-4, size=rows).astype(np.float32)
    stuck = traffic.bootstrap(rows, seed=4).with_predictions(
        **{"probabilities[benign]": np.float32(0.3) + jitter}
    )
    snapshot = _observe(window, stuck)
    collapsed = {c.name: c.collapsed for c in snapshot.predictions}
    assert collapsed == {
        "label": False,
        "probabilities[malignant]": False,
        "probabilities[benign]": True,
    }


def test_normal_predictions_never_collapse(traffic: Traffic) -> None:
    window = DriftWindow.for_model(traffic.metadata)
    for features, predictions in traffic.bootstrap(5000, seed=5).batches(64):
        window.observe(features, predictions)
        assert not any(c.collapsed for c in window.snapshot().predictions)


def test_the_window_forgets_old_rows(traffic: Traffic) -> None:
    settings = DriftSettings(window_rows=1000, block_rows=100, min_rows=100)
    window = DriftWindow.for_model(traffic.metadata, settings)
    old = _observe(window, _shifted(traffic.bootstrap(1000, seed=6)), batch=50)
    assert _statuses(old)[SHIFTED] == 2
    recent = traffic.bootstrap(1000, seed=7)
    forgotten = _observe(window, recent, batch=50)
    fresh = _observe(DriftWindow.for_model(traffic.metadata, settings), recent, batch=50)
    assert forgotten.observed == 2000
    assert fresh.observed == 1000
    assert forgotten.model_dump(exclude={"observed"}) == fresh.model_dump(exclude={"observed"})


def test_the_window_holds_between_one_block_less_and_window_rows(traffic: Traffic) -> None:
    window = DriftWindow.for_model(traffic.metadata, SMALL)
    sizes = []
    for features, predictions in traffic.bootstrap(1250, seed=8).batches(50):
        window.observe(features, predictions)
        sizes.append(window.rows)
    assert sizes[19] == 1000
    assert sizes[20] == 950
    assert min(sizes[20:]) >= 900
    assert max(sizes) == 1000


def test_blocks_older_than_max_age_leave_the_window(traffic: Traffic) -> None:
    now = [0.0]
    window = DriftWindow.for_signature(
        traffic.metadata.signature,
        traffic.metadata.reference,  # type: ignore[arg-type]
        SMALL.model_copy(update={"max_age_s": 60.0}),
        clock=lambda: now[0],
    )
    _observe(window, traffic.bootstrap(300, seed=9), batch=100)
    now[0] = 45.0
    assert _observe(window, traffic.bootstrap(200, seed=10), batch=100).rows == 500
    now[0] = 90.0
    assert window.snapshot().rows == 200


def test_an_insufficient_window_raises_nothing(traffic: Traffic) -> None:
    window = DriftWindow.for_model(traffic.metadata)
    values = _shifted(traffic).features[SHIFTED].copy()
    values[::2] = np.nan
    snapshot = _observe(window, traffic.with_feature(SHIFTED, values).bootstrap(400, seed=11))
    assert snapshot.insufficient
    assert snapshot.rows == 400 < snapshot.min_rows
    assert snapshot.status == 0
    assert set(_statuses(snapshot).values()) == {0}
    assert not any(c.null_spike for c in snapshot.features)
    assert all(c.psi is None for c in snapshot.features)
    shifted = next(c for c in snapshot.features if c.name == SHIFTED)
    assert shifted.reasons == [f"insufficient: {shifted.values} of 500 values"]


def test_unseen_labels_are_pooled_into_other_and_alert(traffic: Traffic) -> None:
    labels = traffic.predictions["label"].copy()
    labels[::5] = 7
    snapshot = _observe(
        DriftWindow.for_model(traffic.metadata, SMALL), traffic.with_predictions(label=labels)
    )
    label = next(c for c in snapshot.predictions if c.name == "label")
    assert label.status == 2
    assert label.test == "chi2"
    assert (label.psi or 0.0) > 0.25


def test_the_snapshot_is_json_and_lists_the_worst_first(traffic: Traffic) -> None:
    snapshot = _observe(DriftWindow.for_model(traffic.metadata, SMALL), _shifted(traffic))
    data = json.loads(snapshot.model_dump_json())
    assert data["model"] == "breast-cancer"
    assert data["version"] == traffic.metadata.version
    assert data["thresholds"]["psi_alert"] == 0.25
    assert {"psi", "test", "statistic", "p_value", "null_rate", "null_spike", "status"} <= set(
        data["features"][0]
    )
    assert "collapsed" in data["predictions"][0]
    assert set(data["entropy"]) == {"probabilities"}
    assert DriftSnapshot.model_validate_json(snapshot.model_dump_json()) == snapshot
    ranked = worst_first(snapshot)
    assert len(ranked) == 30 + 3
    statuses = [c.status for c in ranked]
    assert statuses == sorted(statuses, reverse=True)


def test_thresholds_can_be_set_per_model(traffic: Traffic) -> None:
    lenient = DriftThresholds(psi_warn=50.0, psi_alert=100.0)
    settings = SMALL.model_copy(update={"models": {"breast-cancer": lenient}})
    snapshot = _observe(DriftWindow.for_model(traffic.metadata, settings), _shifted(traffic))
    assert snapshot.thresholds == lenient
    assert _statuses(snapshot)[SHIFTED] == 0


def test_a_version_without_reference_cannot_be_watched(traffic: Traffic) -> None:
    bare = traffic.metadata.model_copy(update={"reference": None})
    with pytest.raises(KeelError, match="without reference data"):
        DriftWindow.for_model(bare)


def test_settings_refuse_a_window_that_is_not_whole_blocks() -> None:
    with pytest.raises(ValueError, match="multiple of block_rows"):
        DriftSettings(window_rows=1000, block_rows=300)
    with pytest.raises(ValueError, match="below psi_warn"):
        DriftThresholds(psi_warn=0.3, psi_alert=0.2)


def test_observers_in_threads_and_snapshots_keep_counts_whole(traffic: Traffic) -> None:
    window = DriftWindow.for_model(traffic.metadata, SMALL)
    batches = traffic.bootstrap(64 * 40, seed=12).batches(64)

    def observe() -> None:
        for features, predictions in batches:
            window.observe(features, predictions)

    with ThreadPoolExecutor(max_workers=4) as pool:
        observers = [pool.submit(observe) for _ in range(4)]
        while not all(f.done() for f in observers):
            snapshot = window.snapshot()
            assert all(c.values == c.rows for c in snapshot.features)
        for observer in observers:
            observer.result()
    final = window.snapshot()
    assert final.observed == 4 * 64 * 40
    assert final.rows == window.rows
    assert all(c.values == final.rows for c in final.features)


def test_a_window_for_the_version_read_back_from_the_registry(traffic: Traffic) -> None:
    stored = Registry(traffic.registry).resolve(f"breast-cancer@{traffic.metadata.version}")
    assert stored.reference == traffic.metadata.reference
    snapshot = _observe(DriftWindow.for_model(stored, SMALL), traffic)
    assert snapshot.version == traffic.metadata.version
    assert snapshot.status == 0
