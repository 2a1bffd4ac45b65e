"""The naive baseline: FastAPI + onnxruntime in one process, one row per model call.

Written the way a typical team writes its first model service: a pydantic body
model, a numpy array built from the feature order, ``session.run``, lists
back. No batching, no validation beyond pydantic's float coercion. It answers
keel's records API (same URL, same JSON shape) so the load generator sends
both servers the same bytes, and it runs on the same uvicorn + httptools +
uvloop stack with one worker, so a comparison measures the application.

Two choices favour the baseline and are stated in docs/benchmarks.md: the
ONNX Runtime session gets keel's thread settings (one intra-op thread, which
matters on a core shared with the event loop), and the handler is ``async def``
by default, calling the model on the event loop: for a model that runs in
microseconds that is faster than FastAPI's thread pool (``--sync-handler``).

    python bench/naive_server.py --model model.onnx --features features.json --port 8081

``--workers N`` runs it as ``uvicorn --workers N`` does: N processes on one port,
each loading its own copy of the model (the usual way to use more than one core).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class PredictRequest(BaseModel):
    instances: list[dict[str, float]]


def create_app(model_path: Path, features: list[str], sync_handler: bool = False) -> FastAPI:
    """The baseline app for one ONNX model whose single input takes ``features`` in order."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    output_names = [output.name for output in session.get_outputs()]

    def predict(request: PredictRequest) -> dict[str, Any]:
        rows = [[instance[name] for name in features] for instance in request.instances]
        x = np.array(rows, dtype=np.float32)
        outputs = session.run(output_names, {input_name: x})
        columns = [output.tolist() for output in outputs]
        return {
            "predictions": [
                dict(zip(output_names, row, strict=True)) for row in zip(*columns, strict=True)
            ]
        }

    app = FastAPI(title="naive model server")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    if sync_handler:

        @app.post("/v1/models/{name}/predict")
        def predict_sync(name: str, request: PredictRequest) -> dict[str, Any]:
            return predict(request)

    else:

        @app.post("/v1/models/{name}/predict")
        async def predict_async(name: str, request: PredictRequest) -> dict[str, Any]:
            return predict(request)

    return app


def app_from_environment() -> FastAPI:
    """The app as each of uvicorn's worker processes builds it (``--workers`` above 1)."""
    features = json.loads(Path(os.environ["NAIVE_FEATURES"]).read_text())
    return create_app(Path(os.environ["NAIVE_MODEL"]), features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="the .onnx file")
    parser.add_argument(
        "--features", type=Path, required=True, help="JSON list of feature names, in input order"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--sync-handler",
        action="store_true",
        help="plain def handler (FastAPI runs it in its thread pool) instead of async def",
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    serving = dict(
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
    if args.workers > 1:
        os.environ["NAIVE_MODEL"] = str(args.model)
        os.environ["NAIVE_FEATURES"] = str(args.features)
        uvicorn.run(
            "naive_server:app_from_environment",
            factory=True,
            workers=args.workers,
            app_dir=str(Path(__file__).resolve().parent),
            **serving,  # type: ignore[arg-type]
        )
        return
    features = json.loads(args.features.read_text())
    app = create_app(args.model, features, sync_handler=args.sync_handler)
    uvicorn.run(app, workers=1, **serving)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
