"""A compute-bound digits classifier: scikit-learn MLP with two 4096-unit layers, as ONNX.

About 17 million parameters, 68 MB of float32 weights: more than a server CPU's
last-level cache (32 MiB on the benchmark host), so a single-row call streams
every weight from memory and costs a millisecond or more, while a batch reads
them once for all its rows. That is the model batching exists for; the
benchmarks use it beside the small, overhead-bound breast-cancer model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from keel.examples.breast_cancer import export_onnx
from keel.examples.digits_mlp import build_signature, split_records
from keel.publishing import publish
from keel.registry import ModelMetadata, Registry
from keel.signature import to_arrays

MODEL_NAME = "digits-wide-mlp"
SEED = 0
HIDDEN = (4096, 4096)
EPOCHS = 4


def train(x: Any, y: Any) -> Any:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler

    model = make_pipeline(
        MaxAbsScaler(),
        MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=EPOCHS, random_state=SEED),
    )
    return model.fit(x, y)


def publish_model(registry: Registry, source_dir: Path, alias: str = "production") -> ModelMetadata:
    """Train on 75% of the digits and publish with the other 25% as reference data."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    signature = build_signature()
    columns = [f.name for f in signature.features]
    train_records, valid_records, y_train, y_valid = split_records(signature)
    x_train = to_arrays(train_records, signature)["input"]
    with warnings.catch_warnings():
        # A few epochs are enough for a benchmark model; it need not converge.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = train(x_train, y_train)
    accuracy = float(model.score(to_arrays(valid_records, signature)["input"], y_valid))
    with tempfile.TemporaryDirectory(prefix="keel-example-") as scratch:
        artifact = Path(scratch) / "model.onnx"
        export_onnx(model, len(columns), artifact)
        return publish(
            artifact,
            name=MODEL_NAME,
            signature=signature,
            registry=registry,
            reference=valid_records,
            alias=alias,
            params={"hidden": list(HIDDEN), "epochs": EPOCHS, "seed": SEED},
            metrics={"accuracy": accuracy},
            critical_packages=["skl2onnx"],
            description="Handwritten digits (8x8), wide scikit-learn MLP, compute-bound",
            source_dir=source_dir,
            allow_untracked=True,
            reason=f"example {alias} model",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registry", default="registry")
    args = parser.parse_args()
    meta = publish_model(Registry(args.registry), Path(__file__).parent)
    print(f"published {meta.ref}: {meta.training.metrics}")


if __name__ == "__main__":
    main()
