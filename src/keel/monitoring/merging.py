"""Several worker processes' metric families as one server's.

Each worker counts only what it answered; ``/metrics`` must describe the whole
server whichever worker the scrape reached. A worker sends its families as
plain JSON (``family_data``); the one scraped adds them up (``merge_families``):
counters and histograms are summed sample by sample, which is exact. A gauge
has no one right sum, so each family's owner says how its gauges combine:
``sum`` (queue depths, requests in flight), ``min`` (1 only if every worker is
ready), ``max`` (the slowest load), ``mean``, or ``worker``: kept apart with a
``worker`` label, for what belongs to one process (its memory, its start time).
A gauge no owner named is kept apart too, never guessed at.

A worker that dies takes its counts with it, and a sum that drops is a counter
reset to Prometheus, which then counts the whole sum as new. ``continued`` keeps
each summed series going from the value last exposed instead: a drop becomes an
offset added from then on, so the server's counters only ever grow, losing at most
what the dead worker counted since the last scrape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Literal

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

GaugeRule = Literal["sum", "min", "max", "mean", "worker"]
FamilyData = dict[str, Any]
"""One family as JSON: name, type, help, unit and its samples [name, labels, value]."""

WORKER_LABEL = "worker"
_SUMMED = ("counter", "histogram", "summary", "gaugehistogram")


def family_data(families: Iterable[Metric]) -> list[FamilyData]:
    """``families`` in the JSON form one worker sends another."""
    return [
        {
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "unit": family.unit,
            "samples": [[s.name, s.labels, _number(s.value)] for s in family.samples],
        }
        for family in families
    ]


def merge_families(
    workers: Sequence[tuple[str, Sequence[FamilyData]]], gauge_rules: Mapping[str, GaugeRule]
) -> list[Metric]:
    """The families of every ``(worker, families)`` pair, combined into the server's."""
    merged: dict[str, tuple[FamilyData, dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]]]
    merged = {}
    for worker, families in workers:
        for family in families:
            name = family["name"]
            if name not in merged:
                merged[name] = (family, {})
            first, values = merged[name]
            rule = _rule(first, gauge_rules)
            for sample_name, labels, value in family["samples"]:
                if rule == "worker":
                    labels = {**labels, WORKER_LABEL: worker}
                key = (sample_name, tuple(labels.items()))
                values.setdefault(key, []).append(float(value))
    return [_metric(first, values, _rule(first, gauge_rules)) for first, values in merged.values()]


def _rule(family: FamilyData, gauge_rules: Mapping[str, GaugeRule]) -> GaugeRule:
    if family["type"] in _SUMMED:
        # A counter of one process's own (its CPU seconds) is kept apart too, if so named.
        return "worker" if gauge_rules.get(family["name"]) == "worker" else "sum"
    return gauge_rules.get(family["name"], "worker")


def _metric(
    family: FamilyData,
    values: Mapping[tuple[str, tuple[tuple[str, str], ...]], list[float]],
    rule: GaugeRule,
) -> Metric:
    metric = Metric(family["name"], family["help"], family["type"], family["unit"])
    for (sample_name, labels), numbers in values.items():
        metric.add_sample(sample_name, dict(labels), _combine(numbers, rule))
    return metric


def _combine(numbers: list[float], rule: GaugeRule) -> float:
    if rule == "min":
        return min(numbers)
    if rule == "max":
        return max(numbers)
    if rule == "mean":
        return math.fsum(numbers) / len(numbers)
    return math.fsum(numbers)  # sum; a worker-labelled sample has one number


def _number(value: float) -> float | str:
    """JSON has no NaN or infinity: those travel as text, which float() reads back."""
    return value if math.isfinite(value) else repr(float(value))


Continuation = MutableMapping[str, dict[str, Any]]
"""Per summed series: its family, sample name and labels, the value last exposed and the
offset added to its sum."""


def continued(families: Sequence[Metric], memory: Continuation, *, learn: bool) -> None:
    """Make every counter and histogram sample of ``families`` continue from ``memory``.

    With ``learn`` (every worker's figures are in the sums), a sample whose sum fell
    below the value last exposed takes the difference as an offset from then on.
    Without it (a worker left out for now, to come back with its counts) nothing is
    learnt: a sample below the last value shows that value until the sum passes it.
    A series no worker reports any more (the one that counted it died) is shown at its
    last value while its version is served; once the version is gone, it is forgotten.
    """
    summed = {family.name: family for family in families if family.type in _SUMMED}
    served = {
        (sample.labels.get("model"), sample.labels["model_version"])
        for family in families
        for sample in family.samples
        if "model_version" in sample.labels
    }
    seen: set[str] = set()
    for family in summed.values():
        samples = []
        for sample in family.samples:
            key = _series(sample.name, sample.labels)
            entry = memory.get(key, {"value": 0.0, "offset": 0.0})
            offset = entry["offset"]
            value = sample.value + offset
            if value < entry["value"]:
                if learn:
                    offset += entry["value"] - value
                value = entry["value"]
            if learn:
                memory[key] = {
                    "family": family.name,
                    "sample": sample.name,
                    "labels": sample.labels,
                    "value": value,
                    "offset": offset,
                }
            seen.add(key)
            samples.append(sample._replace(value=value))
        family.samples = samples
    for key, entry in list(memory.items()):
        if key in seen:
            continue
        labels, carrier = entry["labels"], summed.get(entry["family"])
        version = (labels.get("model"), labels.get("model_version"))
        if carrier is not None and ("model_version" not in labels or version in served):
            carrier.samples.append(Sample(entry["sample"], labels, entry["value"]))
        elif learn:
            del memory[key]


def _series(sample_name: str, labels: Mapping[str, str]) -> str:
    return f"{sample_name}{sorted(labels.items())}"
