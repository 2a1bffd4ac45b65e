"""Several worker processes' metric families as one server's.

Each worker counts only what it answered; ``/metrics`` must describe the whole
server whichever worker the scrape reached. A worker sends its families as
plain JSON (``family_data``); the one scraped adds them up (``merge_families``):
counters and histograms are summed sample by sample, which is exact. A gauge
has no one right sum, so each family's owner says how its gauges combine:
``sum`` (queue depths, requests in flight), ``min`` (1 only if every worker is
ready), ``max`` (the slowest load), ``WeightedMean`` (a share or an average
over a window of rows, each worker's weighed by its rows, which the worker
sends as a gauge of their own), or ``worker``: kept apart with a
``worker`` label, for what belongs to one process (its memory, its start time).
A gauge no owner named is kept apart too, never guessed at.

A worker that dies takes its counts with it, and a sum that drops is a counter
reset to Prometheus, which then counts the whole sum as new. ``continued`` keeps
what each worker process last reported, so the server's counters only ever grow,
losing at most what a dead worker counted since its last report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from prometheus_client.core import Metric
from prometheus_client.samples import Exemplar, Sample


class WeightedMean(NamedTuple):
    """The workers' values averaged, each weighed by that worker's sample with the same
    labels in the gauge family ``weights`` (the rows behind its value)."""

    weights: str


GaugeRule = Literal["sum", "min", "max", "worker"] | WeightedMean
FamilyData = dict[str, Any]
"""One family as JSON: name, type, help, unit and its samples [name, labels, value]."""

WORKER_LABEL = "worker"
_SUMMED = ("counter", "histogram", "summary", "gaugehistogram")
_SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def family_data(families: Iterable[Metric]) -> list[FamilyData]:
    """``families`` in the JSON form one worker sends another."""
    return [
        {
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "unit": family.unit,
            "samples": [
                [s.name, s.labels, _number(s.value)]
                if s.exemplar is None
                else [s.name, s.labels, _number(s.value), _exemplar_data(s.exemplar)]
                for s in family.samples
            ],
        }
        for family in families
    ]


def _exemplar_data(exemplar: Exemplar) -> list[Any]:
    return [exemplar.labels, exemplar.value, exemplar.timestamp]


def merge_families(
    workers: Sequence[tuple[str, Sequence[FamilyData]]], gauge_rules: Mapping[str, GaugeRule]
) -> list[Metric]:
    """The families of every ``(worker, families)`` pair, combined into the server's."""
    merged: dict[str, tuple[FamilyData, dict[_SampleKey, list[float]]]] = {}
    # Per weighted sample, each worker's weight, in the order of its values.
    weights: dict[str, dict[_SampleKey, list[float]]] = {}
    # Per sample, the newest exemplar any worker sent (an OpenMetrics exemplar is one).
    exemplars: dict[_SampleKey, Exemplar] = {}
    for worker, families in workers:
        own = {family["name"]: family for family in families}
        for family in families:
            name = family["name"]
            if name not in merged:
                merged[name] = (family, {})
            first, values = merged[name]
            rule = _rule(first, gauge_rules)
            for sample_name, labels, value, *exemplar in family["samples"]:
                if rule == "worker":
                    labels = {**labels, WORKER_LABEL: worker}
                key = (sample_name, tuple(labels.items()))
                values.setdefault(key, []).append(float(value))
                if isinstance(rule, WeightedMean):
                    weight = _sample_value(own.get(rule.weights), labels)
                    weights.setdefault(name, {}).setdefault(key, []).append(weight)
                if exemplar:
                    newer = Exemplar(*exemplar[0])
                    kept = exemplars.get(key)
                    if kept is None or float(newer.timestamp or 0) > float(kept.timestamp or 0):
                        exemplars[key] = newer
    return [
        _metric(first, values, _rule(first, gauge_rules), exemplars, weights.get(name, {}))
        for name, (first, values) in merged.items()
    ]


def _sample_value(family: FamilyData | None, labels: Mapping[str, str]) -> float:
    """The value of ``family``'s sample with exactly ``labels``; 0 where there is none."""
    for _, sample_labels, value, *_ in family["samples"] if family else ():
        if sample_labels == labels:
            return float(value)
    return 0.0


def _rule(family: FamilyData, gauge_rules: Mapping[str, GaugeRule]) -> GaugeRule:
    if family["type"] in _SUMMED:
        # A counter of one process's own (its CPU seconds) is kept apart too, if so named.
        return "worker" if gauge_rules.get(family["name"]) == "worker" else "sum"
    return gauge_rules.get(family["name"], "worker")


def _metric(
    family: FamilyData,
    values: Mapping[_SampleKey, list[float]],
    rule: GaugeRule,
    exemplars: Mapping[_SampleKey, Exemplar],
    weights: Mapping[_SampleKey, list[float]],
) -> Metric:
    metric = Metric(family["name"], family["help"], family["type"], family["unit"])
    for key, numbers in values.items():
        sample_name, labels = key
        value = _combine(numbers, rule, weights.get(key, []))
        metric.add_sample(sample_name, dict(labels), value, exemplar=exemplars.get(key))
    return metric


def _combine(numbers: list[float], rule: GaugeRule, weights: list[float]) -> float:
    if isinstance(rule, WeightedMean):
        total = math.fsum(weights)
        if total > 0:
            return math.fsum(n * w for n, w in zip(numbers, weights, strict=True)) / total
        # No worker said what stands behind its value: none outweighs another.
        return math.fsum(numbers) / len(numbers)
    if rule == "min":
        return min(numbers)
    if rule == "max":
        return max(numbers)
    return math.fsum(numbers)  # sum; a worker-labelled sample has one number


def _number(value: float) -> float | str:
    """JSON has no NaN or infinity: those travel as text, which float() reads back."""
    return value if math.isfinite(value) else repr(float(value))


Continuation = dict[str, Any]
"""What the summed series stand on: the last report of each worker process, the live ones
by worker index and the ended ones by process, and every series seen."""


def continued(
    families: Sequence[Metric],
    workers: Sequence[Mapping[str, Any]],
    memory: Continuation,
    rules: Mapping[str, GaugeRule],
) -> None:
    """Make every summed series of ``families`` the server's count since it started.

    Each series is the sum, over every worker process the server has run, of the
    largest count that process reported: a worker that died keeps what it reported,
    and the one started in its place (a later start at the same index) adds to it. So
    the counts never go down, lose only what a dead worker counted since its last
    report, and come out the same whatever order scrapes store theirs in. ``workers``
    are the figures each sent (index, process, started, families). Series of a version
    no longer served are forgotten; families kept per worker (``rules``: ``worker``,
    such as a process's CPU seconds) are left as they are.
    """
    live: dict[str, dict[str, Any]] = memory.setdefault("live", {})
    ended: dict[str, dict[str, float]] = memory.setdefault("ended", {})
    series: dict[str, list[Any]] = memory.setdefault("series", {})
    for figures in workers:
        process = str(figures["process"])
        counts = {}
        for family in figures["families"]:
            if family["type"] not in _SUMMED or rules.get(family["name"]) == "worker":
                continue
            for sample_name, labels, value, *_ in family["samples"]:
                key = _series(sample_name, labels)
                series.setdefault(key, [family["name"], sample_name, labels])
                counts[key] = float(value)
        index, known = str(figures["index"]), live.get(str(figures["index"]))
        if process in ended or (known is not None and figures["started"] < known["started"]):
            # A report of a process gone since (an older scrape's, stored late).
            _keep_largest(ended.setdefault(process, {}), counts)
        elif known is not None and known["process"] == process:
            _keep_largest(known["counts"], counts)
        else:
            if known is not None:
                _keep_largest(ended.setdefault(known["process"], {}), known["counts"])
            live[index] = {"process": process, "started": figures["started"], "counts": counts}
    _forget_unserved(families, memory)
    totals: dict[str, float] = {}
    for counted in [*(entry["counts"] for entry in live.values()), *ended.values()]:
        for key, value in counted.items():
            totals[key] = totals.get(key, 0.0) + value
    summed = {
        family.name: family
        for family in families
        if family.type in _SUMMED and rules.get(family.name) != "worker"
    }
    # Exemplars stay on their series: the counts are the server's, the exemplar a request's.
    exemplars = {
        _series(sample.name, sample.labels): sample.exemplar
        for family in summed.values()
        for sample in family.samples
        if sample.exemplar is not None
    }
    for family in summed.values():
        family.samples = []
    for key, (family_name, sample_name, labels) in series.items():
        family = summed.get(family_name)
        if family is not None:
            family.samples.append(
                Sample(sample_name, labels, totals.get(key, 0.0), exemplar=exemplars.get(key))
            )


def _keep_largest(kept: dict[str, float], counts: Mapping[str, float]) -> None:
    """A process's counts only grow: of two of its reports, the larger count is the later."""
    for key, value in counts.items():
        kept[key] = max(kept.get(key, 0.0), value)


def _forget_unserved(families: Sequence[Metric], memory: Continuation) -> None:
    """Drop the series of versions that no family shows any more (retired versions)."""
    served = {
        (sample.labels.get("model"), sample.labels["model_version"])
        for family in families
        for sample in family.samples
        if "model_version" in sample.labels
    }
    gone = [
        key
        for key, (_, _, labels) in memory["series"].items()
        if "model_version" in labels
        and (labels.get("model"), labels["model_version"]) not in served
    ]
    for key in gone:
        del memory["series"][key]
        for entry in memory["live"].values():
            entry["counts"].pop(key, None)
        for counts in memory["ended"].values():
            counts.pop(key, None)
    memory["ended"] = {process: counts for process, counts in memory["ended"].items() if counts}


def _series(sample_name: str, labels: Mapping[str, str]) -> str:
    return f"{sample_name}{sorted(labels.items())}"
