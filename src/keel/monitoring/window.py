"""A drift window: one model version's recent traffic, kept as counts at its reference bins.

The window is a ring of fixed-size blocks (``block_rows`` rows each, by default
500): a batch's rows are added to the current block, and when it is full the
oldest block is cleared and becomes the current one. The window is the sum of
its blocks, so it covers the last ``window_rows`` rows less the part of the
oldest block already forgotten; with ``max_age_s`` set, blocks whose newest row
is older than that are left out too. Observing costs the same per row however
long the window is, and a snapshot sums a few kilobytes of counts.

Threads: ``observe`` may run in any number of inference threads while a
scrape calls ``snapshot`` on the event loop. ``observe`` bins its batch without
the lock and holds it only to add the batch's counts to the current block (a
``bincount`` and a few vector additions); ``snapshot`` holds it only to sum the
blocks and copy the recent predictions, and judges the copy after releasing
it. Neither ever waits long for the other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.errors import KeelError
from keel.monitoring.assessment import assess
from keel.monitoring.layout import BinnedBatch, Moments, WindowLayout
from keel.monitoring.snapshot import DriftSnapshot
from keel.monitoring.totals import WindowTotals
from keel.reference import ReferenceStats
from keel.registry import ModelMetadata
from keel.settings import DriftSettings, DriftThresholds
from keel.signature import Signature


class DriftWindow:
    """The last rows of one model version's features and predictions, against its reference."""

    def __init__(
        self,
        layout: WindowLayout,
        settings: DriftSettings | None = None,
        thresholds: DriftThresholds | None = None,
        *,
        model: str = "",
        version: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or DriftSettings()
        self.thresholds = thresholds or self.settings.thresholds_for(model)
        self.layout = layout
        self.model = model
        self.version = version
        self._clock = clock
        self._lock = threading.Lock()
        blocks, recent = self.settings.blocks, self.settings.collapse_rows
        moments = 3 * len(layout.moment_positions) + 2 * len(layout.probability_outputs)
        self._counts = np.zeros((blocks, layout.size), dtype=np.int64)
        # Every slot's count since the window was made, never forgotten: what Prometheus
        # histograms and counters need (they must only grow).
        self._lifetime = np.zeros(layout.size, dtype=np.int64)
        self._rows = np.zeros(blocks, dtype=np.int64)
        self._stamps = np.zeros(blocks, dtype=np.float64)
        self._moments = np.zeros((blocks, moments), dtype=np.float64)
        self._block = 0
        self._observed = 0
        self._recent_columns = np.array([c.position for c in layout.predictions], np.int64)
        self._recent_slots = np.zeros((recent, len(self._recent_columns)), dtype=np.int64)
        self._recent_values = np.zeros((recent, len(layout.moment_positions)))

    @classmethod
    def for_model(
        cls, metadata: ModelMetadata, settings: DriftSettings | None = None
    ) -> DriftWindow:
        """A window for one published version, with its model's thresholds from ``settings``."""
        if metadata.reference is None:
            raise KeelError(
                f"{metadata.ref} was published without reference data, so there is nothing "
                "to compare its traffic with; publish it again with reference=... to monitor drift"
            )
        return cls.for_signature(
            metadata.signature,
            metadata.reference,
            settings,
            model=metadata.name,
            version=metadata.version,
        )

    @classmethod
    def for_signature(
        cls,
        signature: Signature,
        reference: ReferenceStats,
        settings: DriftSettings | None = None,
        *,
        model: str = "",
        version: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> DriftWindow:
        """A window from a signature and ``ReferenceStats``, without a registry."""
        layout = WindowLayout.from_reference(signature, reference)
        return cls(layout, settings, model=model, version=version, clock=clock)

    def observe(
        self,
        features: Mapping[str, npt.NDArray[Any]],
        predictions: Mapping[str, npt.NDArray[Any]],
    ) -> None:
        """Add one batch of rows to the window.

        ``features`` as :func:`~keel.monitoring.columns.feature_columns` gives them and
        ``predictions`` as :func:`~keel.monitoring.columns.output_columns` does: one
        array per column, all of one length.
        """
        batch = self.layout.bin(features, predictions)
        if batch.rows == 0:
            return
        now = self._clock()
        with self._lock:
            start = 0
            while start < batch.rows:
                if self._rows[self._block] >= self.settings.block_rows:
                    self._next_block()
                block = self._block
                stop = min(batch.rows, start + self.settings.block_rows - int(self._rows[block]))
                rows = slice(start, stop)
                counts = np.bincount(batch.slots[:, rows].ravel(), minlength=self.layout.size)
                self._counts[block] += counts
                self._lifetime += counts
                self._moments[block] += batch.moments[:, rows].sum(axis=1)
                self._rows[block] += stop - start
                self._stamps[block] = now
                start = stop
            self._remember(batch)
            self._observed += batch.rows

    def snapshot(self) -> DriftSnapshot:
        """Judge the window as it is now."""
        return self.judge(self.totals())

    def totals(self) -> WindowTotals:
        """The window's counts as they are now, to judge (``judge``) or to add to another's."""
        now = self._clock()
        with self._lock:
            live = self._rows > 0
            if self.settings.max_age_s > 0:
                live &= now - self._stamps <= self.settings.max_age_s
            recent = min(self._observed, self.settings.collapse_rows)
            return WindowTotals(
                rows=int(self._rows[live].sum()),
                observed=self._observed,
                counts=self._counts[live].sum(axis=0),
                moments=Moments.split(
                    self._moments[live].sum(axis=0), len(self.layout.moment_positions)
                ),
                recent_slots=self._recent_slots[:recent].copy(),
                recent_values=self._recent_values[:recent].copy(),
            )

    def judge(self, totals: WindowTotals) -> DriftSnapshot:
        """The verdict on ``totals``: this window's, or several workers' added together."""
        return assess(
            self.layout,
            totals,
            self.settings,
            self.thresholds,
            model=self.model,
            version=self.version,
        )

    def lifetime_counts(self) -> npt.NDArray[np.int64]:
        """Count per slot (see ``WindowLayout``) of every row observed since the window was made."""
        with self._lock:
            return self._lifetime.copy()

    @property
    def rows(self) -> int:
        """Rows in the window now (ignoring ``max_age_s``)."""
        with self._lock:
            return int(self._rows.sum())

    def _next_block(self) -> None:
        self._block = (self._block + 1) % self.settings.blocks
        block = self._block
        self._counts[block] = 0
        self._rows[block] = 0
        self._moments[block] = 0.0

    def _remember(self, batch: BinnedBatch) -> None:
        """Write the batch's last predictions into the ring of recent ones."""
        size = self.settings.collapse_rows
        take = min(batch.rows, size)
        first = (self._observed + batch.rows - take) % size
        at: slice | npt.NDArray[np.int64] = slice(first, first + take)
        if first + take > size:
            at = (first + np.arange(take)) % size
        latest = slice(batch.rows - take, batch.rows)
        self._recent_slots[at] = batch.slots[self._recent_columns, latest].T
        self._recent_values[at] = batch.predictions[:, latest].T
