"""How often drift windows cry wolf on in-distribution traffic, and what observing costs.

    .venv/bin/python bench/drift_false_alarms.py              # 1000 windows per size
    .venv/bin/python bench/drift_false_alarms.py --windows 100 --sizes 500,2000 --json

The breast-cancer logistic regression of ``keel.examples`` is trained on the
training split and published with that split as its reference (``keel.publish``
computes the statistics). Each window is a fresh ``DriftWindow`` with the
default settings, filled with a bootstrap resample (fixed seed) of one of two
sources, observed in 64-row batches through the column functions the server
uses, and counted as a false alarm when any feature reaches status 2:

* ``held-out``: the held-out split (143 rows). It is a finite sample itself,
  so it differs from the reference by more than live traffic from the same
  population would, and windows warn (status 1) often; they must not alert.
* ``reference``: the training split resampled, where the only noise is the
  window's own; this is what the bias correction of PSI has to absorb.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import timeit
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keel.examples import breast_cancer
from keel.monitoring.columns import feature_columns, output_columns
from keel.monitoring.window import DriftWindow
from keel.publishing import publish
from keel.registry import ModelMetadata
from keel.runtimes import load_runtime
from keel.settings import DriftSettings
from keel.signature import to_arrays

SIZES = (500, 1000, 2000, 5000)
SOURCES = ("held-out", "reference")
BATCH = 64
SEED = 0
Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class Traffic:
    """A published model and rows of its traffic as observed columns."""

    metadata: ModelMetadata
    features: Columns
    predictions: Columns

    @property
    def rows(self) -> int:
        return len(next(iter(self.features.values())))

    def take(self, index: np.ndarray) -> tuple[Columns, Columns]:
        """The rows at ``index``, as feature and prediction columns."""
        return (
            {name: column[index] for name, column in self.features.items()},
            {name: column[index] for name, column in self.predictions.items()},
        )


def published_traffic(scratch: Path) -> dict[str, Traffic]:
    """Train, publish with the training split as reference, and predict both splits."""
    from sklearn.model_selection import train_test_split

    frame, target, classes = breast_cancer.load_frame()
    train_frame, valid_frame, y_train, _ = train_test_split(
        frame, target, test_size=0.25, random_state=SEED, stratify=target
    )
    signature = breast_cancer.build_signature(frame, classes)
    model = breast_cancer.train(
        breast_cancer.VARIANTS[0], to_arrays(train_frame, signature)["input"], y_train
    )
    artifact = scratch / "model.onnx"
    breast_cancer.export_onnx(model, len(signature.features), artifact)
    metadata = publish(
        artifact,
        name=breast_cancer.MODEL_NAME,
        signature=signature,
        registry=scratch / "registry",
        reference=train_frame,
        source_dir=scratch,
        allow_untracked=True,
    )
    runtime = load_runtime(artifact)
    traffic = {}
    try:
        for source, split in (("held-out", valid_frame), ("reference", train_frame)):
            arrays = to_arrays(split, signature)
            outputs = output_columns(runtime.predict(arrays), signature)
            traffic[source] = Traffic(metadata, feature_columns(arrays, signature), outputs)
    finally:
        runtime.close()
    return traffic


def false_alarms(traffic: Traffic, size: int, windows: int, seed: int) -> dict[str, Any]:
    """The share of fresh windows of ``size`` bootstrap rows that raised each flag."""
    rng = np.random.default_rng(seed)
    counts = {"feature_alert": 0, "feature_warn": 0, "prediction_alert": 0, "collapsed": 0}
    worst_excess = 0.0
    for _ in range(windows):
        window = DriftWindow.for_model(traffic.metadata)
        index = rng.integers(0, traffic.rows, size=size)
        for start in range(0, size, BATCH):
            window.observe(*traffic.take(index[start : start + BATCH]))
        snapshot = window.snapshot()
        feature_status = max(c.status for c in snapshot.features)
        counts["feature_alert"] += feature_status >= 2
        counts["feature_warn"] += feature_status >= 1
        counts["prediction_alert"] += any(c.status >= 2 for c in snapshot.predictions)
        counts["collapsed"] += any(c.collapsed for c in snapshot.predictions)
        excess = max((c.psi or 0.0) - (c.psi_noise or 0.0) for c in snapshot.features)
        worst_excess = max(worst_excess, excess)
    return {
        "rows": size,
        "windows": windows,
        **{f"{name}_rate": count / windows for name, count in counts.items()},
        "worst_psi_excess": round(worst_excess, 4),
    }


def observe_cost_us(traffic: Traffic) -> dict[str, float]:
    """Microseconds per observe call, best of five timeit runs, for 1-row and 64-row batches."""
    window = DriftWindow.for_model(traffic.metadata)
    costs = {}
    for rows in (1, BATCH):
        features, predictions = traffic.take(np.arange(rows))
        calls = 1000

        def observe(f: Columns = features, p: Columns = predictions) -> None:
            window.observe(f, p)

        best = min(timeit.repeat(observe, number=calls, repeat=5))
        costs[f"observe_{rows}_rows_us"] = round(best / calls * 1e6, 2)
    costs["observe_per_row_in_64_us"] = round(costs[f"observe_{BATCH}_rows_us"] / BATCH, 3)
    costs["snapshot_us"] = round(
        min(timeit.repeat(window.snapshot, number=50, repeat=3)) / 50 * 1e6
    )
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", type=int, default=1000, help="windows per size and source")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="rows per window")
    parser.add_argument("--sources", default=",".join(SOURCES), help="traffic to resample")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="keel-drift-bench-") as scratch:
        traffic = published_traffic(Path(scratch))
        results = {
            "seed": args.seed,
            "defaults": DriftSettings().model_dump(),
            "windows": {
                source: [false_alarms(traffic[source], n, args.windows, args.seed) for n in sizes]
                for source in args.sources.split(",")
            },
            "cost": observe_cost_us(traffic["held-out"]),
        }
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return
    print(f"seed {args.seed}, {args.windows} bootstrap windows per size and source")
    for source, rows in results["windows"].items():
        for row in rows:
            print(
                f"{source:>9} {row['rows']:>5} rows: feature alerts {row['feature_alert_rate']:.1%}"
                f", warnings {row['feature_warn_rate']:.1%}, prediction alerts "
                f"{row['prediction_alert_rate']:.1%}, collapses {row['collapsed_rate']:.1%}, "
                f"worst PSI over noise {row['worst_psi_excess']}"
            )
    for name, value in results["cost"].items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
