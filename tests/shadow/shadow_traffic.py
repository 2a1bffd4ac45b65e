"""Real shadow traffic for the report tests: two model versions answer the same held-out rows.

The records are built the way the server's mirror builds them (one record per
request, both outputs, both measured latencies), from real models: the
breast-cancer example's production and candidate versions from a registry, and
the digits MLP beside a copy with perturbed weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keel.examples import breast_cancer, digits_mlp
from keel.loading import load_version
from keel.logstore.records import CandidateStatus, PredictionRecord, input_digest
from keel.registry import Registry
from keel.runtimes import Runtime, load_runtime
from keel.signature import Output, to_arrays

# 2025-03-01T00:00:00Z: records get fixed times so spans and hours are exact.
START = 1_740_787_200.0

Tensors = dict[str, np.ndarray]
StatusOf = Callable[[int], CandidateStatus]


@dataclass(frozen=True)
class ModelPair:
    """A primary and a candidate of one model, and held-out inputs for both."""

    model: str
    primary_version: str
    candidate_version: str
    primary: Runtime
    candidate: Runtime
    inputs: Tensors
    outputs: Sequence[Output]

    @property
    def rows(self) -> int:
        return len(next(iter(self.inputs.values())))


def label_of(version: str) -> str:
    """A registry version as the server logs it (``sha-timestamp``)."""
    return version.replace("/", "-", 1)


def breast_cancer_pair(registry: Registry, candidate_alias: str = "candidate") -> ModelPair:
    """Production against ``candidate_alias`` on the breast-cancer held-out split."""
    model = breast_cancer.MODEL_NAME
    primary = registry.resolve(f"{model}@production")
    candidate = registry.resolve(f"{model}@{candidate_alias}")
    frame, target, _ = breast_cancer.load_frame()
    _, valid_frame, _, _ = breast_cancer.split(frame, target)
    return ModelPair(
        model=model,
        primary_version=label_of(primary.version),
        candidate_version=label_of(candidate.version),
        primary=load_version(registry, primary).runtime,
        candidate=load_version(registry, candidate).runtime,
        inputs=to_arrays(valid_frame, primary.signature),
        outputs=primary.signature.outputs,
    )


def digits_pair(folder: Path, *, output: str = "softmax", noise: float = 0.05) -> ModelPair:
    """The digits MLP against a copy whose weights carry Gaussian noise (seeded)."""
    from safetensors.numpy import save_file

    signature = digits_mlp.build_signature()
    train_records, valid_records, y_train, _ = digits_mlp.split_records(signature)
    weights = digits_mlp.train(to_arrays(train_records, signature)["input"], y_train)
    rng = np.random.default_rng(7)
    perturbed = {
        name: (w + rng.normal(0.0, noise * float(np.std(w)), w.shape)).astype(np.float32)
        for name, w in weights.items()
    }
    config = {"activation": "relu", "output": output, "input_name": "input"}
    runtimes = []
    for name, tensors in (("primary", weights), ("candidate", perturbed)):
        path = folder / f"digits-{output}-{name}.safetensors"
        save_file(tensors, str(path))
        runtimes.append(load_runtime(path, forward="numpy-mlp", forward_config=config))
    return ModelPair(
        model=f"digits-{output}",
        primary_version="d1-20250101T000000.000000Z",
        candidate_version="d2-20250201T000000.000000Z",
        primary=runtimes[0],
        candidate=runtimes[1],
        inputs=to_arrays(valid_records, signature),
        outputs=signature.outputs if output == "softmax" else (),
    )


def always_ok(_: int) -> CandidateStatus:
    return CandidateStatus.OK


def run_traffic(
    pair: ModelPair,
    requests: int,
    *,
    rows_per_request: int = 3,
    spacing_s: float = 60.0,
    start: float = START,
    status_of: StatusOf = always_ok,
    store_inputs: bool = True,
    request_id: Callable[[int], str] = lambda i: f"req-{i:05d}",
) -> list[PredictionRecord]:
    """``requests`` requests through both models, cycling over the held-out rows."""
    records = []
    for i in range(requests):
        first = (i * rows_per_request) % pair.rows
        index = np.arange(first, first + rows_per_request) % pair.rows
        inputs = {name: values[index] for name, values in pair.inputs.items()}
        status = status_of(i)
        primary_output, primary_ms = _timed(pair.primary, inputs)
        candidate_output, candidate_ms = None, None
        if status is CandidateStatus.OK:
            candidate_output, candidate_ms = _timed(pair.candidate, inputs)
        records.append(
            PredictionRecord(
                at=start + i * spacing_s,
                request_id=request_id(i),
                model=pair.model,
                primary_version=pair.primary_version,
                candidate_version=pair.candidate_version,
                rows=rows_per_request,
                status=status,
                primary_ms=primary_ms,
                primary_output=primary_output,
                inputs=inputs if store_inputs else None,
                input_hash=input_digest(inputs),
                candidate_ms=candidate_ms,
                candidate_output=candidate_output,
                error="candidate failed" if status is CandidateStatus.ERROR else None,
            )
        )
    return records


def stacked(records: Sequence[PredictionRecord], side: str, name: str) -> np.ndarray:
    """One output of the OK records, all rows, as the report should line them up."""
    ok = [r for r in records if r.status is CandidateStatus.OK]
    outputs: list[Any] = [
        (r.primary_output if side == "primary" else r.candidate_output) for r in ok
    ]
    return np.concatenate([o[name] for o in outputs])


def _timed(runtime: Runtime, inputs: Tensors) -> tuple[Tensors, float]:
    began = time.perf_counter()
    answer = runtime.predict(dict(inputs))
    return answer, (time.perf_counter() - began) * 1000.0


def write_log(
    path: Path, records: Sequence[PredictionRecord], candidates: Sequence[Any] = ()
) -> str:
    """Write ``records`` (and candidate facts) to a SQLite log the way the server does; its URL."""
    from keel.logstore.opening import open_log_store

    url = f"sqlite:///{path}"
    store = open_log_store(url)
    try:
        store.write(records)
        for info in candidates:
            store.record_candidate(info)
    finally:
        store.close()
    return url


# Text an attacker could put in a request id or a string input, and a model in a label.
HOSTILE = (
    "<script>window.__injected='script'</script><img src=x onerror=\"window.__injected='img'\">"
)
HOSTILE_LABELS = np.array(
    ["<b>malignant</b>", 'benign"><svg onload="window.__injected=\'svg\'">'], dtype=object
)


def with_hostile_strings(records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
    """The records with a hostile request id, a hostile string input and string labels."""
    import dataclasses

    def named(outputs: Tensors | None) -> Tensors | None:
        if outputs is None:
            return None
        return {**outputs, "label": HOSTILE_LABELS[np.asarray(outputs["label"])]}

    changed = []
    for i, record in enumerate(records):
        note = np.array([f"{HOSTILE} {i}"] * record.rows, dtype=object)
        changed.append(
            dataclasses.replace(
                record,
                request_id=f"{HOSTILE}#{i}",
                inputs={**(record.inputs or {}), "note": note},
                primary_output=named(dict(record.primary_output)),
                candidate_output=named(
                    None if record.candidate_output is None else dict(record.candidate_output)
                ),
            )
        )
    return changed
