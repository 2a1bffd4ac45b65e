"""The shadow status of several workers as the server's: counts added, agreement by rows."""

from __future__ import annotations

from typing import Any

import pytest

from keel.web.shadow_routes import _merged


def _status(ok: int, agreement: float | None, rows: int, ready: bool = True) -> dict[str, Any]:
    return {
        "model": "m",
        "candidate": {"ready": ready, "paused_s": 0.0, "timeouts_in_a_row": 0},
        "queued": 1,
        "requests": {"ok": ok},
        "agreement": agreement,
        "agreement_rows": rows,
        "mean_abs_difference": {} if agreement is None else {"score": 1.0 - agreement},
        # Each of the rows' one score differs by 1 - agreement, as a worker would sum them.
        "difference_sums": {} if agreement is None else {"score": [(1.0 - agreement) * rows, rows]},
        "log": {"written": ok, "dropped": {}, "pending": 0, "pending_limit": 10, "healthy": True},
    }


def test_counts_add_up_and_agreement_weighs_each_worker_by_its_rows() -> None:
    total = _merged([_status(900, 0.9, 900), _status(100, 0.5, 100), _status(0, None, 0)])
    assert total["requests"] == {"ok": 1000}
    assert total["queued"] == 3
    assert total["log"]["written"] == 1000
    assert total["agreement_rows"] == 1000
    assert total["agreement"] == pytest.approx(0.86)  # not (0.9 + 0.5) / 2
    assert total["mean_abs_difference"]["score"] == pytest.approx(0.14)


def test_the_candidate_is_ready_only_if_it_is_in_every_worker() -> None:
    assert (
        _merged([_status(1, 1.0, 1), _status(1, 1.0, 1, ready=False)])["candidate"]["ready"]
        is False
    )
