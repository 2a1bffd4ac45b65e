"""What a drift window reports: a JSON-serialisable verdict per feature and prediction column."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from keel.settings import DriftThresholds

OK, WARN, ALERT = 0, 1, 2
"""Column statuses: nothing to see, worth a look, act."""


class ColumnDrift(BaseModel):
    """How one column of the window compares with the reference."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    role: Literal["feature", "prediction"]
    kind: Literal["numeric", "categorical", "text"]
    status: int = Field(ge=OK, le=ALERT, description="0 ok, 1 warn, 2 alert.")
    rows: int = Field(description="Rows of the window.")
    values: int = Field(description="Non-null rows, the sample the distribution tests use.")
    psi: float | None = Field(description="PSI against the reference; None until judged.")
    psi_noise: float | None = Field(
        description="PSI expected from sampling alone at these sizes; status uses psi - psi_noise."
    )
    test: Literal["ks", "chi2"] | None = Field(
        description="The second test: binned Kolmogorov-Smirnov (numeric) or chi-square."
    )
    statistic: float | None
    p_value: float | None
    null_rate: float | None = Field(description="Share of the window's rows that are null.")
    reference_null_rate: float
    reasons: list[str] = Field(
        default_factory=list, description="Why the status is what it is, one line each."
    )


class FeatureDrift(ColumnDrift):
    """A feature column's verdict, with its null-rate check."""

    role: Literal["feature"] = "feature"
    null_spike: bool = Field(description="The null rate jumped above the reference's.")


class PredictionDrift(ColumnDrift):
    """A prediction column's verdict, with its collapse check."""

    role: Literal["prediction"] = "prediction"
    collapsed: bool = Field(
        description="Predictions lost their spread (recently or in the window)."
    )


class DriftSnapshot(BaseModel):
    """The state of one model version's drift window at one moment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    version: str
    status: int = Field(ge=OK, le=ALERT, description="The worst column status.")
    rows: int = Field(description="Rows in the window now.")
    observed: int = Field(description="Rows observed since the window was made.")
    window_rows: int
    min_rows: int
    insufficient: bool = Field(
        description="Fewer than min_rows rows: drift and null spikes are not judged yet."
    )
    thresholds: DriftThresholds
    features: list[FeatureDrift]
    predictions: list[PredictionDrift]
    entropy: dict[str, float] = Field(
        default_factory=dict,
        description="Mean entropy (nats) of each probability output's rows in the window, by "
        "output name; an output is absent until the window holds a row of it.",
    )


def worst_first(snapshot: DriftSnapshot) -> list[FeatureDrift | PredictionDrift]:
    """Every column of a snapshot, the most alarming first.

    By status, then raised flags (collapse, null spike), then PSI above its
    noise, then the smaller p-value; names break ties so the order is stable.
    """
    columns: list[FeatureDrift | PredictionDrift] = [*snapshot.features, *snapshot.predictions]
    return sorted(columns, key=_severity)


def _severity(column: FeatureDrift | PredictionDrift) -> tuple[int, int, float, float, str]:
    flagged = column.collapsed if isinstance(column, PredictionDrift) else column.null_spike
    excess = (column.psi or 0.0) - (column.psi_noise or 0.0)
    p_value = column.p_value if column.p_value is not None else 1.0
    return (-column.status, -int(flagged), -excess, p_value, column.name)
