"""Breast-cancer classifiers exported to ONNX: logistic regression as ``production``,
gradient boosting as ``candidate`` (the pair shadow mode compares)."""

from __future__ import annotations

import argparse
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keel.publishing import publish
from keel.registry import ModelMetadata, Registry
from keel.signature import Feature, Output, Signature, to_arrays

MODEL_NAME = "breast-cancer"
SEED = 0
OPTIONAL = "smoothness_error"


@dataclass(frozen=True)
class Variant:
    """One way of training the model, and the alias it is published under."""

    alias: str
    algorithm: str
    params: dict[str, Any]


VARIANTS = (
    Variant("production", "logistic_regression", {"C": 1.0, "max_iter": 1000}),
    Variant(
        "candidate",
        "gradient_boosting",
        {"n_estimators": 100, "max_depth": 2, "learning_rate": 0.1},
    ),
)


def feature_name(raw: str) -> str:
    """'mean radius' -> 'mean_radius': names that are safe as JSON keys and metric labels."""
    return re.sub(r"[^a-z0-9]+", "_", raw.lower()).strip("_")


def load_frame() -> tuple[Any, np.ndarray, list[str]]:
    """The data set as a DataFrame with snake_case columns, the targets and class names."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.drop(columns=["target"])
    frame.columns = [feature_name(c) for c in frame.columns]
    return frame, data.target.to_numpy(), [str(n) for n in data.target_names]


# Far above any nucleus measurement (the largest in training, an area, is 2,501), far
# below what overflows the model's arithmetic.
MEASUREMENT_CEILING = 1e6


def build_signature(frame: Any, classes: list[str]) -> Signature:
    """Every measurement is a non-negative float; the model outputs a label and probabilities.

    Each measurement is at most ``MEASUREMENT_CEILING``: a logistic regression fed
    1e38 answers NaN, which the server would have to refuse as the model's failure
    rather than as the client's mistake it is.
    One measurement, ``OPTIONAL``, may be missing: the model then sees the
    training mean in its place, and the server counts the null (a jump in that
    count is what the null-rate alert watches for).
    """
    features = [
        Feature(
            name=column,
            dtype="float",
            minimum=0.0,
            maximum=MEASUREMENT_CEILING,
            description="cell nucleus measurement",
        )
        if column != OPTIONAL
        else Feature(
            name=column,
            dtype="float",
            minimum=0.0,
            maximum=MEASUREMENT_CEILING,
            nullable=True,
            missing="indicator",
            missing_indicator=float(frame[column].mean()),
            description="cell nucleus measurement; when missing the model sees the mean",
        )
        for column in frame.columns
    ]
    outputs = [
        Output(name="label", dtype="int64", shape=[None], kind="label", labels=classes),
        Output(
            name="probabilities",
            dtype="float32",
            shape=[None, len(classes)],
            kind="probability",
            labels=classes,
        ),
    ]
    return Signature(features=features, outputs=outputs)


def split(frame: Any, target: np.ndarray) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """The training and held-out splits every variant uses: train, held out, their targets."""
    from sklearn.model_selection import train_test_split

    parts: tuple[Any, Any, np.ndarray, np.ndarray] = tuple(
        train_test_split(frame, target, test_size=0.25, random_state=SEED, stratify=target)
    )
    return parts


def train(variant: Variant, x_train: np.ndarray, y_train: np.ndarray) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if variant.algorithm == "logistic_regression":
        model = make_pipeline(StandardScaler(), LogisticRegression(**variant.params))
    else:
        model = GradientBoostingClassifier(random_state=SEED, **variant.params)
    return model.fit(x_train, y_train)


def export_onnx(model: Any, width: int, path: Path) -> None:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    # zipmap=False keeps probabilities a plain tensor; ZipMap's list of dicts
    # is slow to build and keel refuses non-tensor outputs.
    onnx_model = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, width]))],
        options={"zipmap": False},
        target_opset=17,
    )
    path.write_bytes(onnx_model.SerializeToString())


def publish_variant(variant: Variant, registry: Registry, source_dir: Path) -> ModelMetadata:
    """Train one variant on the training split and publish it with the validation split."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    frame, target, classes = load_frame()
    train_frame, valid_frame, y_train, y_valid = split(frame, target)
    signature = build_signature(frame, classes)
    # Training goes through to_arrays, the function the server calls on requests.
    x_train = to_arrays(train_frame, signature)["input"]
    x_valid = to_arrays(valid_frame, signature)["input"]
    model = train(variant, x_train, y_train)
    probabilities = model.predict_proba(x_valid)[:, 1]
    metrics = {
        "accuracy": float(accuracy_score(y_valid, model.predict(x_valid))),
        "roc_auc": float(roc_auc_score(y_valid, probabilities)),
    }
    with tempfile.TemporaryDirectory(prefix="keel-example-") as scratch:
        artifact = Path(scratch) / "model.onnx"
        export_onnx(model, x_train.shape[1], artifact)
        return publish(
            artifact,
            name=MODEL_NAME,
            signature=signature,
            registry=registry,
            # Drift is judged against what the model learned from; the held-out
            # split stays what it is for: traffic the model has not seen.
            reference=train_frame,
            alias=variant.alias,
            params={"algorithm": variant.algorithm, **variant.params, "seed": SEED},
            metrics=metrics,
            critical_packages=["skl2onnx"],
            description=f"Breast cancer diagnosis, {variant.algorithm.replace('_', ' ')}",
            source_dir=source_dir,
            allow_untracked=True,
            reason=f"example {variant.alias} model",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registry", default="registry")
    args = parser.parse_args()
    registry = Registry(args.registry)
    for variant in VARIANTS:
        meta = publish_variant(variant, registry, Path(__file__).parent)
        print(f"published {meta.ref} as {variant.alias}: {meta.training.metrics}")


if __name__ == "__main__":
    main()
