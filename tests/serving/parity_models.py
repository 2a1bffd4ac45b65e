"""Real tabular models with every kind of feature, for holding the APIs to one verdict.

``loans``: a scikit-learn Pipeline (a ColumnTransformer with a StandardScaler
per numeric input and a OneHotEncoder, then a logistic regression) exported
with skl2onnx. Its three input tensors hold, between them, an int feature with
bounds, a nullable float with an indicator outside its bounds, a bool, a
categorical feature one-hot encoded and one coded by its index (all in a
float32 tensor), int features in an int64 tensor, and a categorical and a
free-text string feature in a string tensor, which the model one-hot encodes
itself. ``loans-numeric`` is the same without the string tensor: a model whose
v2 requests can take the fast path (``keel.serving.v2_fast_path``).
The data is generated from a fixed seed; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from keel import publish
from keel.registry import ModelMetadata, Registry
from keel.signature import Feature, ModelInput, Output, Signature, to_arrays

LOANS = "loans"
LOANS_NUMERIC = "loans-numeric"
PLANS = ("free", "pro", "team")
SIZES = ("S", "M", "L", "XL")
REGIONS = ("north", "south", "east", "west")
CITIES = ("Paris", "Oslo", "Lima", "Pune", "Kyoto")
ROWS = 400

SIGNATURE = Signature(
    features=[
        Feature(name="age", dtype="int", minimum=18, maximum=100),
        Feature(
            name="income",
            dtype="float",
            minimum=0,
            maximum=1e6,
            nullable=True,
            missing="indicator",
            missing_indicator=-1.0,
        ),
        Feature(name="owner", dtype="bool"),
        Feature(name="plan", dtype="categorical", levels=list(PLANS), encoding="onehot"),
        Feature(name="size", dtype="categorical", levels=list(SIZES), encoding="index"),
        Feature(name="loans", dtype="int", minimum=0, maximum=50),
        Feature(
            name="late",
            dtype="int",
            minimum=0,
            maximum=365,
            nullable=True,
            missing="indicator",
            missing_indicator=-1,
        ),
        Feature(name="region", dtype="categorical", levels=list(REGIONS)),
        Feature(
            name="city", dtype="string", nullable=True, missing="indicator", missing_indicator=""
        ),
    ],
    outputs=[
        Output(name="label", dtype="int64", shape=[None], kind="label", labels=["repaid", "late"]),
        Output(
            name="probabilities",
            dtype="float32",
            shape=[None, 2],
            kind="probability",
            labels=["repaid", "late"],
        ),
    ],
    inputs=[
        ModelInput(
            name="applicant", dtype="float32", features=["age", "income", "owner", "plan", "size"]
        ),
        ModelInput(name="history", dtype="int64", features=["loans", "late"]),
        ModelInput(name="place", dtype="string", features=["region", "city"]),
    ],
)


NUMERIC_SIGNATURE = Signature(
    features=[f for f in SIGNATURE.features if f.name not in ("region", "city")],
    outputs=SIGNATURE.outputs,
    inputs=SIGNATURE.inputs[:2],
)
"""``SIGNATURE`` without its string tensor."""


def loan_records(rows: int, seed: int = 0) -> list[dict[str, Any]]:
    """Applicants as records, some with a value missing, all valid for ``SIGNATURE``."""
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(rows):
        records.append(
            {
                "age": int(rng.integers(18, 101)),
                "income": None if rng.random() < 0.1 else float(round(rng.gamma(2, 20000), 2)),
                "owner": bool(rng.random() < 0.4),
                "plan": str(rng.choice(PLANS)),
                "size": str(rng.choice(SIZES)),
                "loans": int(rng.integers(0, 51)),
                "late": None if rng.random() < 0.1 else int(rng.integers(0, 366)),
                "region": str(rng.choice(REGIONS)),
                "city": None if rng.random() < 0.1 else str(rng.choice(CITIES)),
            }
        )
    return records


def _targets(records: list[dict[str, Any]], seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    score = np.array(
        [
            0.04 * (50 - r["age"])
            + 0.3 * r["loans"] / 10
            + (0.01 * r["late"] if r["late"] is not None else 0.5)
            - (0.8 if r["owner"] else 0.0)
            + {"free": 0.5, "pro": 0.0, "team": -0.5}[r["plan"]]
            + 0.3 * SIZES.index(r["size"])
            + (0.4 if r["region"] == "south" else 0.0)
            for r in records
        ]
    )
    return (score + rng.normal(0, 0.5, len(records)) > 0).astype(np.int64)


def export_loans(path: Path, signature: Signature) -> list[dict[str, Any]]:
    """Train the pipeline on generated applicants, write its ONNX file; return held-out records."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    names = {f.name for f in signature.features}
    records = [{k: v for k, v in r.items() if k in names} for r in loan_records(ROWS)]
    arrays = to_arrays(records, signature)
    # One table of every input's columns side by side, as skl2onnx numbers them.
    table = np.concatenate([arrays[t.name].astype(object) for t in signature.inputs], axis=1)
    steps, types, start = [], [], 0
    for tensor in signature.inputs:
        width = signature.input_width(tensor.name)
        columns = list(range(start, start + width))
        start += width
        if tensor.dtype == "string":
            steps.append((tensor.name, OneHotEncoder(handle_unknown="ignore"), columns))
            types.append((tensor.name, StringTensorType([None, width])))
        else:
            steps.append((tensor.name, StandardScaler(), columns))
            kind = Int64TensorType if tensor.dtype == "int64" else FloatTensorType
            types.append((tensor.name, kind([None, width])))
    model = Pipeline(
        [("columns", ColumnTransformer(steps)), ("classifier", LogisticRegression(max_iter=1000))]
    )
    model.fit(table, _targets(loan_records(ROWS)))
    onnx_model = to_onnx(model, initial_types=types, options={"zipmap": False}, target_opset=17)
    path.write_bytes(onnx_model.SerializeToString())
    return [{k: v for k, v in r.items() if k in names} for r in loan_records(40, seed=2)]


def publish_loans(registry: Path, scratch: Path, name: str = LOANS) -> ModelMetadata:
    """Publish ``loans@production`` (or ``loans-numeric``, without the string tensor)."""
    signature = SIGNATURE if name == LOANS else NUMERIC_SIGNATURE
    artifact = scratch / f"{name}.onnx"
    held_out = export_loans(artifact, signature)
    return publish(
        artifact,
        name=name,
        signature=signature,
        registry=Registry(registry),
        reference=held_out,
        alias="production",
        source_dir=scratch,
        allow_untracked=True,
        reason="signature parity tests",
    )
