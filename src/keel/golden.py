"""Golden examples: real inputs with the outputs the model gave at publish time.

Reproducing them after a load is what proves that this environment computes
what the training environment computed; a library bump that turns scores into
zeros fails here, before the model takes traffic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from keel.runtimes import Runtime
from keel.signature import Signature, to_arrays

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4


class GoldenSet(BaseModel):
    """Input records and the outputs they produced at publish, with the tolerance to hold."""

    # NaN is kept as NaN: a model that outputs NaN must reproduce NaN, not null.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    inputs: list[dict[str, Any]]
    outputs: dict[str, Any] = Field(description="Output name -> nested list, one row per input.")
    atol: float = Field(default=DEFAULT_ATOL, ge=0)
    rtol: float = Field(default=DEFAULT_RTOL, ge=0)


@dataclass(frozen=True)
class OutputCheck:
    """How one output compared with its golden values."""

    name: str
    ok: bool
    mismatched: int
    total: int
    max_abs_diff: float | None
    detail: str


@dataclass(frozen=True)
class GoldenReport:
    """The result of reproducing a golden set."""

    checks: tuple[OutputCheck, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> list[str]:
        return [f"output '{c.name}': {c.detail}" for c in self.checks if not c.ok]


def predict_records(
    runtime: Runtime, signature: Signature, records: Sequence[Mapping[str, Any]]
) -> dict[str, np.ndarray]:
    """Run records through the same conversion the server uses, then the runtime."""
    return runtime.predict(to_arrays(list(records), signature))


def golden_set(
    records: Sequence[Mapping[str, Any]],
    outputs: Mapping[str, np.ndarray],
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> GoldenSet:
    """Keep ``records`` and the outputs the model gave them now as the golden set."""
    return GoldenSet(
        inputs=[dict(r) for r in records],
        outputs={name: np.asarray(value).tolist() for name, value in outputs.items()},
        atol=atol,
        rtol=rtol,
    )


def check_golden(runtime: Runtime, signature: Signature, golden: GoldenSet) -> GoldenReport:
    """Predict the golden inputs again and compare every output within tolerance."""
    current = predict_records(runtime, signature, golden.inputs)
    checks = []
    for name, expected in golden.outputs.items():
        if name not in current:
            checks.append(OutputCheck(name, False, 0, 0, None, "the model no longer has it"))
            continue
        checks.append(_compare(name, current[name], np.asarray(expected), golden))
    return GoldenReport(tuple(checks))


def _compare(name: str, got: np.ndarray, expected: np.ndarray, golden: GoldenSet) -> OutputCheck:
    if got.shape != expected.shape:
        return OutputCheck(
            name,
            False,
            got.size,
            got.size,
            None,
            f"shape {list(got.shape)} differs from golden {list(expected.shape)}",
        )
    total = int(expected.size)
    if np.issubdtype(got.dtype, np.number) and np.issubdtype(expected.dtype, np.number):
        got64 = got.astype(np.float64)
        want = expected.astype(np.float64)
        close = np.isclose(got64, want, atol=golden.atol, rtol=golden.rtol, equal_nan=True)
        diff = np.abs(got64 - want)
        max_diff = float(np.nanmax(diff)) if diff.size else 0.0
    else:
        close = got.astype(str) == expected.astype(str)
        max_diff = None
    mismatched = int((~close).sum())
    if mismatched == 0:
        return OutputCheck(name, True, 0, total, max_diff, "reproduced")
    where = np.argwhere(~close)[0].tolist()
    detail = (
        f"{mismatched} of {total} values differ beyond atol={golden.atol}, rtol={golden.rtol}; "
        f"first at {where}: got {got[tuple(where)]!r}, golden {expected[tuple(where)]!r}"
        + (f"; max abs diff {max_diff:.3g}" if max_diff is not None else "")
    )
    return OutputCheck(name, False, mismatched, total, max_diff, detail)
