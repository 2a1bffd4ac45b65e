"""A digits classifier: a small MLP trained in plain numpy, published as safetensors.

The weights are the only thing stored; the forward pass is keel's built-in
``numpy-mlp``, which ships with the code, never with the model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from keel.publishing import publish
from keel.registry import ModelMetadata, Registry
from keel.signature import Feature, Output, Signature, to_arrays

MODEL_NAME = "digits-mlp"
SEED = 0
HIDDEN = 64
EPOCHS = 40
BATCH = 64
LEARNING_RATE = 1e-2
PIXEL_MAX = 16.0


def build_signature() -> Signature:
    """64 pixel intensities (0-16) in, probabilities of the ten digits and the label out."""
    features = [
        Feature(
            name=f"pixel_{row}_{col}",
            dtype="int",
            minimum=0,
            maximum=16,
            description=f"ink in cell ({row}, {col}) of the 8x8 grid",
            unit="count",
        )
        for row in range(8)
        for col in range(8)
    ]
    digits = [str(d) for d in range(10)]
    outputs = [
        Output(
            name="probabilities",
            dtype="float32",
            shape=[None, 10],
            kind="probability",
            labels=digits,
        ),
        Output(name="label", dtype="int64", shape=[None], kind="label", labels=digits),
    ]
    return Signature(features=features, outputs=outputs)


def train(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Mini-batch Adam on cross-entropy; returns weights in numpy-mlp's layout."""
    rng = np.random.default_rng(SEED)
    scaled = x / PIXEL_MAX
    sizes = [(x.shape[1], HIDDEN), (HIDDEN, 10)]
    params = []
    for fan_in, fan_out in sizes:
        params.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out)).astype(np.float32))
        params.append(np.zeros(fan_out, dtype=np.float32))
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    onehot = np.eye(10, dtype=np.float32)[y]
    step = 0
    for _ in range(EPOCHS):
        order = rng.permutation(len(scaled))
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            grads = _gradients(params, scaled[batch], onehot[batch])
            step += 1
            for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
                m, v = moments[i]
                m[:] = 0.9 * m + 0.1 * grad
                v[:] = 0.999 * v + 0.001 * grad**2
                m_hat = m / (1 - 0.9**step)
                v_hat = v / (1 - 0.999**step)
                param -= LEARNING_RATE * m_hat / (np.sqrt(v_hat) + 1e-8)
    # Fold the input scaling into the first layer so the model takes raw pixels.
    params[0] = params[0] / np.float32(PIXEL_MAX)
    names = ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    return {
        name: np.ascontiguousarray(p, dtype=np.float32)
        for name, p in zip(names, params, strict=True)
    }


def _gradients(params: list[np.ndarray], x: np.ndarray, target: np.ndarray) -> list[np.ndarray]:
    w0, b0, w1, b1 = params
    hidden_in = x @ w0 + b0
    hidden = np.maximum(hidden_in, 0.0)
    logits = hidden @ w1 + b1
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    d_logits = (probabilities - target) / len(x)
    d_hidden = (d_logits @ w1.T) * (hidden_in > 0)
    return [x.T @ d_hidden, d_hidden.sum(axis=0), hidden.T @ d_logits, d_logits.sum(axis=0)]


def split_records(
    signature: Signature,
) -> tuple[list[dict[str, int]], list[dict[str, int]], np.ndarray, np.ndarray]:
    """The digits as JSON records: 75% to train on, 25% kept as reference data (stratified)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    columns = [f.name for f in signature.features]
    records = [dict(zip(columns, (int(v) for v in row), strict=True)) for row in digits.data]
    train_records, valid_records, y_train, y_valid = train_test_split(
        records, digits.target, test_size=0.25, random_state=SEED, stratify=digits.target
    )
    return train_records, valid_records, y_train, y_valid


def publish_model(registry: Registry, source_dir: Path, alias: str = "production") -> ModelMetadata:
    """Train on 75% of the digits, publish with the other 25% as reference data."""
    from safetensors.numpy import save_file

    signature = build_signature()
    train_records, valid_records, y_train, y_valid = split_records(signature)
    x_train = to_arrays(train_records, signature)["input"]
    weights = train(x_train, y_train)
    with tempfile.TemporaryDirectory(prefix="keel-example-") as scratch:
        artifact = Path(scratch) / "model.safetensors"
        save_file(weights, str(artifact), metadata={"architecture": "mlp-64-64-10"})
        config = {"activation": "relu", "output": "softmax", "input_name": "input"}
        meta = publish(
            artifact,
            name=MODEL_NAME,
            signature=signature,
            registry=registry,
            reference=valid_records,
            alias=alias,
            forward="numpy-mlp",
            forward_config=config,
            params={
                "hidden": HIDDEN,
                "epochs": EPOCHS,
                "batch": BATCH,
                "learning_rate": LEARNING_RATE,
                "seed": SEED,
            },
            metrics={
                "accuracy": _accuracy(
                    weights, to_arrays(valid_records, signature)["input"], y_valid
                )
            },
            description="Handwritten digits (8x8), MLP trained in numpy",
            source_dir=source_dir,
            allow_untracked=True,
            reason=f"example {alias} model",
        )
    return meta


def _accuracy(weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    hidden = np.maximum(x @ weights["layers.0.weight"] + weights["layers.0.bias"], 0.0)
    logits = hidden @ weights["layers.1.weight"] + weights["layers.1.bias"]
    return float((logits.argmax(axis=1) == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registry", default="registry")
    args = parser.parse_args()
    meta = publish_model(Registry(args.registry), Path(__file__).parent)
    print(f"published {meta.ref}: {meta.training.metrics}")


if __name__ == "__main__":
    main()
