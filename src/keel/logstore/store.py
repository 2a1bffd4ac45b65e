"""The interface every prediction-log backend implements (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from keel.logstore.records import CandidateInfo, PredictionRecord


class LogStore(Protocol):
    """A durable prediction log. Every method blocks: call it off the event loop.

    A store that cannot write (down, disk full) raises ``LogStoreUnavailable`` and
    must work again on a later call once the backend is back: implementations
    reconnect by themselves.
    """

    url: str

    def write(self, records: Sequence[PredictionRecord], store_inputs: bool = True) -> None:
        """Append ``records`` in one transaction; all or none are stored."""
        ...

    def record_candidate(self, info: CandidateInfo) -> None:
        """Note that a server started a candidate (what it is, what memory it took)."""
        ...

    def read(
        self,
        model: str,
        since: float | None = None,
        until: float | None = None,
        candidate_version: str | None = None,
    ) -> list[PredictionRecord]:
        """Records of ``model`` with ``since <= at < until``, oldest first."""
        ...

    def candidates(self, model: str) -> list[CandidateInfo]:
        """Every candidate started for ``model``, oldest first."""
        ...

    def close(self) -> None: ...
