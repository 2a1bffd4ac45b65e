"""A worker's own figures, as it sends them to the others, and the server's ``/metrics`` from all.

Counters and histograms add up over workers; gauges combine as their owners say
(``keel.monitoring.merging``); drift is judged once more on every worker's
window added together (``keel.monitoring.totals``), so a verdict describes all
of the traffic, never the part one worker happened to answer. The worker's own
process series keep a ``worker`` label.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from keel.monitoring.exposition import PROCESS_GAUGES, families_text
from keel.monitoring.merging import GaugeRule, continued, family_data, merge_families
from keel.monitoring.snapshot import DriftSnapshot
from keel.monitoring.totals import WindowTotals, merged
from keel.serving.exposition import SERVING_GAUGES, drift_families, monitored_versions
from keel.serving.served_version import ServedVersion
from keel.shadow.exposition import SHADOW_GAUGES
from keel.web.context import ServerState
from keel.web.inference_statistics import add_statistics, statistics_of
from keel.web.peers import Peers
from keel.web.shadow_routes import shadow_status
from keel.web.v2_routes import batching_stats

GAUGE_RULES: Mapping[str, GaugeRule] = {**PROCESS_GAUGES, **SERVING_GAUGES, **SHADOW_GAUGES}
STARTED = time.time()
PROCESS = f"{os.getpid()}-{STARTED:.6f}"
FIGURES = ("families", "drift", "statistics", "batching", "shadow")
"""Every part of a worker's figures; another worker asks for the ones it needs."""


def own_figures(
    state: ServerState, peers: Peers, parts: Collection[str] = FIGURES
) -> dict[str, Any]:
    """This worker's figures as it sends them (JSON), only the ``parts`` asked for: families
    without the drift verdicts, drift windows, statistics, batching, shadow."""
    versions = state.manager.versions()
    makers: dict[str, Callable[[], object]] = {
        "families": lambda: family_data(_local_metrics(state).collect()),
        "drift": lambda: [
            {"model": v.name, "version": v.label, "totals": v.monitor.totals().to_json()}
            for v in monitored_versions(state.manager.versions())
            if v.monitor is not None
        ],
        "statistics": lambda: [statistics_of(v) for v in versions],
        "batching": lambda: {
            f"{v.name}/{v.label}": stats
            for v in versions
            if (stats := batching_stats(v)) is not None
        },
        "shadow": lambda: {name: shadow_status(m) for name, m in state.shadowing.mirrors.items()},
    }
    figures: dict[str, Any] = {
        "index": peers.index,
        "pid": os.getpid(),
        # Which process this is, and when it started: the counters' continuation tells a
        # worker started again from the one before it by these.
        "process": PROCESS,
        "started": STARTED,
        "ready": state.serving,
    }
    figures.update((part, makers[part]()) for part in parts if part in makers)
    return figures


def _local_metrics(state: ServerState) -> CollectorRegistry:
    assert state.local_metrics is not None
    return state.local_metrics


async def server_metrics(
    state: ServerState, peers: Peers, openmetrics: bool = False
) -> tuple[bytes, str]:
    """The whole server's ``/metrics``: this worker's figures and every other's that answered,
    and its content type."""
    others = await peers.states(("families", "drift"))
    own = own_figures(state, peers, ("families", "drift"))
    everyone = [own, *others]
    families = merge_families([(str(f["index"]), f["families"]) for f in everyone], GAUGE_RULES)
    with peers.run_dir.continuation() as memory:
        continued(families, everyone, memory, GAUGE_RULES)
    snapshots = [
        (version, server_drift(version, others))
        for version in monitored_versions(state.manager.versions())
    ]
    families.extend(drift_families(snapshots))
    families.extend(_worker_families(peers, everyone))
    return families_text(families, openmetrics)


def server_drift(version: ServedVersion, others: Sequence[Mapping[str, Any]]) -> DriftSnapshot:
    """``version``'s drift verdict on its window in this worker and every other that sent one."""
    monitor = version.monitor
    assert monitor is not None
    own = monitor.totals()
    parts = [own]
    for figures in others:
        for entry in figures["drift"]:
            if entry["model"] == version.name and entry["version"] == version.label:
                totals = WindowTotals.from_json(entry["totals"])
                if own.fits(totals):
                    parts.append(totals)
    return monitor.window.judge(merged(parts, monitor.window.settings.collapse_rows))


def server_statistics(version: ServedVersion, others: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``version``'s statistics summed over this worker and every other that sent them."""
    total = statistics_of(version)
    for figures in others:
        for entry in figures["statistics"]:
            if entry["name"] == version.name and entry["version"] == version.label:
                add_statistics(total, entry)
    return total


def _worker_families(peers: Peers, everyone: Sequence[Mapping[str, Any]]) -> Iterator[Metric]:
    configured = GaugeMetricFamily(
        "keel_workers", "Worker processes the server runs (server.workers)."
    )
    configured.add_metric([], peers.count)
    yield configured
    reporting = GaugeMetricFamily(
        "keel_workers_reporting",
        "Workers whose figures this scrape holds as they are now; fewer than keel_workers "
        "while one restarts (its figures are left out) or is too busy to answer in time (its "
        "last are used).",
    )
    reporting.add_metric([], sum(f.get("fresh", True) for f in everyone))
    yield reporting
    ready = GaugeMetricFamily(
        "keel_workers_ready", "Workers whose every served model is loaded, verified and warm."
    )
    ready.add_metric([], sum(bool(f["ready"]) for f in everyone))
    yield ready
    restarts = CounterMetricFamily(
        "keel_worker_restarts",
        "Times the supervisor started a worker again after it exited.",
        labels=["worker"],
    )
    for index, count in enumerate(peers.run_dir.restarts(peers.count)):
        restarts.add_metric([str(index)], count)
    yield restarts
