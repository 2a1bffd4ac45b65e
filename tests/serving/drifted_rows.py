"""Breast-cancer records that drift: held-out rows with one feature shifted and one emptied."""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.examples import breast_cancer

SHIFTED = "mean_texture"
SHIFT_IN_STDS = 3.0
NULL_SHARE = 0.5

Record = dict[str, Any]


def texture_std() -> float:
    """The training split's standard deviation of the shifted feature."""
    frame, target, _ = breast_cancer.load_frame()
    train_frame, _, _, _ = breast_cancer.split(frame, target)
    return float(train_frame[SHIFTED].std())


def resample(records: list[Record], rows: int, rng: np.random.Generator) -> list[Record]:
    """A bootstrap resample of ``records``, copied so they may be changed."""
    return [dict(records[i]) for i in rng.integers(0, len(records), size=rows)]


def drifted(records: list[Record], rows: int, std: float, seed: int) -> list[Record]:
    """``rows`` resampled held-out rows, SHIFTED moved and the optional feature often null."""
    rng = np.random.default_rng(seed)
    resampled = resample(records, rows, rng)
    for record in resampled:
        record[SHIFTED] += SHIFT_IN_STDS * std
        if rng.random() < NULL_SHARE:
            record[breast_cancer.OPTIONAL] = None
    return resampled
