"""``keel.publish``: check a model, describe it completely, and store it in the registry."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keel.environment import TrainingEnvironment, capture_environment
from keel.errors import KeelError
from keel.golden import DEFAULT_ATOL, DEFAULT_RTOL, golden_set, predict_records
from keel.publish_checks import check_outputs_match, check_signature_matches
from keel.records import Record, as_records, is_json_safe
from keel.reference import (
    ColumnStats,
    ReferenceStats,
    categorical_stats,
    numeric_stats,
    prediction_stats,
    text_stats,
)
from keel.registry import (
    ArtifactInfo,
    ModelMetadata,
    Registry,
    TrainingInfo,
    VersionContent,
)
from keel.registry.storage import Progress
from keel.runtimes import Runtime, load_runtime
from keel.settings import RuntimeSettings
from keel.signature import Signature, synthetic_records, to_arrays
from keel.source import git_source

GOLDEN_COUNT = 32
PREDICT_CHUNK = 4096
ARTIFACT_NAMES = {"onnx": "model.onnx", "safetensors": "model.safetensors"}
REQUIREMENTS_FILE = "requirements.lock"


def publish(
    artifact: str | Path,
    *,
    name: str,
    signature: Signature,
    registry: Registry | str | Path,
    reference: Any = None,
    golden: Sequence[Mapping[str, Any]] | None = None,
    alias: str | None = None,
    forward: str | None = None,
    forward_config: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    critical_packages: Sequence[str] = (),
    description: str = "",
    source_dir: str | Path = ".",
    allow_untracked: bool = False,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    runtime_settings: RuntimeSettings | None = None,
    progress: Progress | None = None,
    reason: str = "",
) -> ModelMetadata:
    """Publish a model file (ONNX or safetensors) as a new immutable registry version.

    The file is refused before it is parsed if it is a pickle in any disguise.
    The model is loaded and checked against ``signature`` (every input and output
    by name, dtype and shape, statically and on the golden rows' actual outputs:
    see ``keel.publish_checks``); ``reference`` data
    (records, columns or a DataFrame, e.g. the validation set) gives the
    reference statistics and the golden examples, which are predicted now and
    stored with the tolerance they must be reproduced to.
    """
    store = registry if isinstance(registry, Registry) else Registry(registry)
    # The file the user names may be a link (DVC and git-annex keep files that way): the
    # bytes it leads to are published, and copied, so the registry holds no link itself.
    artifact = Path(artifact).resolve()
    source = git_source(Path(source_dir), allow_untracked=allow_untracked)
    runtime = load_runtime(
        artifact, settings=runtime_settings, forward=forward, forward_config=forward_config
    )
    try:
        check_signature_matches(signature, runtime)
        reference_records = as_records(reference) if reference is not None else None
        golden_records = _golden_records(signature, golden, reference_records)
        # Run once: the arrays are both checked against the signature and kept as golden.
        golden_outputs = predict_records(runtime, signature, golden_records)
        check_outputs_match(signature, golden_outputs, len(golden_records))
        environment = capture_environment()
        content = VersionContent(
            artifact=ArtifactInfo(
                path=ARTIFACT_NAMES[runtime.format],
                format=runtime.format,
                forward=forward,
                forward_config=dict(forward_config or {}),
            ),
            signature=signature,
            environment=environment,
            reference=(
                reference_stats(runtime, signature, reference_records)
                if reference_records is not None
                else None
            ),
            golden=golden_set(golden_records, golden_outputs, atol=atol, rtol=rtol),
            training=TrainingInfo(params=dict(params or {}), metrics=dict(metrics or {})),
            critical_packages=list(critical_packages),
            description=description,
        )
    finally:
        runtime.close()
    meta = _store(store, name, artifact, runtime.format, environment, content, source, progress)
    if alias is not None:
        store.set_alias(name, alias, meta.version, reason=reason or "published")
    return meta


def _store(
    store: Registry,
    name: str,
    artifact: Path,
    fmt: str,
    environment: TrainingEnvironment,
    content: VersionContent,
    source: Any,
    progress: Progress | None,
) -> ModelMetadata:
    with tempfile.TemporaryDirectory(prefix="keel-publish-") as scratch:
        lock = Path(scratch) / REQUIREMENTS_FILE
        lock.write_text(environment.requirements_lock())
        files = {ARTIFACT_NAMES[fmt]: artifact, REQUIREMENTS_FILE: lock}
        return store.publish(name, files, content, source, progress)


def _golden_records(
    signature: Signature,
    golden: Sequence[Mapping[str, Any]] | None,
    reference: list[Record] | None,
) -> list[Record]:
    if golden is not None:
        records = as_records(list(golden))
        if not records:
            raise KeelError("golden examples were given but the list is empty")
        return records
    if reference:
        usable = [r for r in reference if is_json_safe(r)]
        if not usable:
            raise KeelError("no reference row can be stored as JSON (all hold NaN or infinity)")
        # Evenly spaced rows: deterministic, and spread over the whole data set.
        picks = np.unique(np.linspace(0, len(usable) - 1, num=GOLDEN_COUNT).round().astype(int))
        return [usable[i] for i in picks]
    return synthetic_records(signature, GOLDEN_COUNT)


def reference_stats(
    runtime: Runtime, signature: Signature, records: list[Record]
) -> ReferenceStats:
    """Statistics of every feature and of the model's predictions on ``records``."""
    if not records:
        raise KeelError("reference data is empty")
    outputs = _predict_in_chunks(runtime, signature, records)
    kinds = {o.name: o.kind for o in signature.outputs}
    labels = {o.name: o.labels for o in signature.outputs}
    declared = {name: value for name, value in outputs.items() if name in kinds}
    return ReferenceStats(
        rows=len(records),
        features=feature_stats(signature, records),
        predictions=prediction_stats(declared, kinds, labels),
    )


def feature_stats(signature: Signature, records: list[Record]) -> dict[str, ColumnStats]:
    """Statistics of every feature of ``records``, each by the kind of its dtype."""
    features: dict[str, ColumnStats] = {}
    for feature in signature.features:
        values = [r.get(feature.name) for r in records]
        if feature.dtype in ("float", "int"):
            features[feature.name] = numeric_stats(values)
        elif feature.dtype == "categorical":
            features[feature.name] = categorical_stats(values, feature.levels or ())
        elif feature.dtype == "bool":
            features[feature.name] = categorical_stats(values, ("false", "true"))
        else:
            features[feature.name] = text_stats(values)
    return features


def _predict_in_chunks(
    runtime: Runtime, signature: Signature, records: list[Record]
) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(records), PREDICT_CHUNK):
        chunk = runtime.predict(to_arrays(records[start : start + PREDICT_CHUNK], signature))
        for name, value in chunk.items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in parts.items()}
