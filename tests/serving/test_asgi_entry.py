"""keel's app as an ASGI app under a stock ASGI server (uvicorn): the same answers as keel serve.

docs/serving.md says the app runs under any ASGI server for embedding, and shows
how: this runs its example as written. There the inference routes come through
``InferenceFront.__call__`` from ASGI messages (headers as a list, the body in
chunks), not from keel's HTTP server, so this serves the demo models with uvicorn
and asks both servers the same questions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from keel_server import DEMO_REFS, ServerProcess, free_port

from keel.registry import Registry

DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def _embedded_script(folder: Path) -> Path:
    """The embedding example of docs/serving.md, saved in ``folder`` as a user copies it."""
    page = DOCS.read_text()
    block = page.split("<!-- embedded-asgi:begin -->", 1)[1].split("<!-- embedded-asgi:end -->")[0]
    script = folder / "embedded.py"
    script.write_text(block.strip().removeprefix("```python").removesuffix("```"))
    return script


@pytest.fixture(scope="module")
def under_uvicorn(
    demo_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    script = _embedded_script(tmp_path_factory.mktemp("asgi"))
    log = script.with_name("uvicorn.log")
    port = free_port()
    # The port goes through the settings too: the app warms itself over HTTP on it.
    env = {**os.environ, "KEEL_SERVER__PORT": str(port), "KEEL_SERVER__WATCH_INTERVAL_S": "0"}
    process = subprocess.Popen(
        [sys.executable, str(script), str(demo_registry), *DEMO_REFS],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    running = ServerProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def records(demo_registry: Path) -> list[dict[str, Any]]:
    golden = Registry(demo_registry).resolve("breast-cancer@production").golden
    return [dict(row) for row in golden.inputs[:3]]


def _ask(url: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    row = [float(records[0][name]) for name in records[0]]
    v2 = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row}]}
    binary_json = orjson.dumps({**v2, "parameters": {"binary_data_output": True}})
    with httpx.Client(base_url=url, timeout=30) as client:
        answers = {
            "records": client.post("/v1/models/breast-cancer/predict", json={"instances": records}),
            "v2 JSON": client.post("/v2/models/breast-cancer/infer", json=v2),
            "v2 binary output": client.post(
                "/v2/models/breast-cancer/infer",
                content=binary_json,
                headers={"content-type": "application/json"},
            ),
            "records, chunked": client.post(
                "/v1/models/breast-cancer/predict",
                content=iter([b'{"instances": ', orjson.dumps(records[:1]), b"}"]),
            ),
            "a misspelt feature": client.post(
                "/v1/models/breast-cancer/predict",
                json={"instances": [{**records[0], "mean_radiuss": 1.0}]},
            ),
            "a GET": client.get("/v2/models/breast-cancer/infer"),
            "an unknown model": client.post("/v2/models/nosuch/infer", json=v2),
        }
    return {
        name: (
            answer.status_code,
            answer.headers.get("content-type"),
            answer.headers.get("x-keel-model-version"),
            answer.content if name == "v2 binary output" else answer.json(),
        )
        for name, answer in answers.items()
    }


def test_the_asgi_app_under_uvicorn_answers_as_keel_serve_does(
    under_uvicorn: ServerProcess, server: ServerProcess, records: list[dict[str, Any]]
) -> None:
    embedded = _ask(under_uvicorn.url, records)
    served = _ask(server.url, records)
    assert embedded.keys() == served.keys()
    for name, answer in embedded.items():
        assert answer[:3] == served[name][:3], name
        if isinstance(answer[3], bytes):
            assert answer[3] == served[name][3], name
        elif answer[0] == 200:
            assert orjson.dumps(answer[3], option=orjson.OPT_SORT_KEYS) == orjson.dumps(
                served[name][3], option=orjson.OPT_SORT_KEYS
            ), name
        else:
            assert answer[3] == served[name][3], name
    status, _, _, document = embedded["records"]
    assert status == 200
    assert len(document["predictions"]) == len(records)
    assert np.isclose(sum(document["predictions"][0]["probabilities"]), 1.0, atol=1e-5)
    assert embedded["a misspelt feature"][0] == 422
    assert embedded["a GET"][0] == 405
    assert embedded["an unknown model"][0] == 404
