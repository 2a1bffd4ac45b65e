"""Access: who may change what a server serves, and what its answers give away.

The model-repository endpoints (``POST /v2/repository/models/{name}/load|unload``) take a
bearer token, compared in constant time, and are off when none is configured. No answer
of any route, to any input, quotes a file system path or a stack trace, even for a
version whose refusal names the file it refused. (The container runs as uid 1001:
``tests/deploy/test_container.py``, ``tests/deploy/test_k8s.py``.)
"""

from __future__ import annotations

import ast
import inspect
import json
import pickle
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from figures import Figures
from hostile_files import Template, plant_version

from keel.registry import Registry
from keel.web import repository_routes
from keel.web.http_errors import without_paths
from serving.keel_server import ServerProcess, start_server

pytestmark = pytest.mark.integration

SECTION = "access"
TOKEN = "reliability-admin-token"  # noqa: S105 - a token for a loopback test server
MODEL = "breast-cancer"
# A version whose artifact is a pickle: refused at load, and the refusal names the file.
REFUSED = "pickled"
REPOSITORY = Path(__file__).resolve().parents[2]
ADMIN_ACTIONS = ("load", "unload")
NOT_THE_TOKEN = {
    "no Authorization header": None,
    "a wrong token": f"Bearer not-{TOKEN}",
    "the token less its last character": f"Bearer {TOKEN[:-1]}",
    "the token and one character more": f"Bearer {TOKEN}x",
    "the token under another scheme": f"Basic {TOKEN}",
    "the token with no scheme": TOKEN,
    "the scheme with no token": "Bearer",
    "an empty header": "",
}


@dataclass(frozen=True)
class GuardedServer:
    server: ServerProcess
    registry: Path
    client: httpx.Client


@pytest.fixture(scope="module")
def guarded(
    demo_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GuardedServer]:
    """The demo's breast-cancer model beside a refused version, repository API on."""
    work = tmp_path_factory.mktemp("guarded")
    registry = work / "registry"
    shutil.copytree(demo_registry, registry)
    template = Template.of(registry, f"{MODEL}@production")
    weights = pickle.dumps({"weights": [0.5, -0.5]})
    plant_version(registry, REFUSED, template, {"model.onnx": weights}, "model.onnx")
    server = start_server(
        registry,
        (f"{MODEL}@production", f"{REFUSED}@production"),
        work / "server.log",
        KEEL_ADMIN_TOKEN=TOKEN,
        KEEL_SERVER__WATCH_INTERVAL_S="0",
    )
    server.wait_live()
    with server.client() as client:
        _wait_for_state(client, REFUSED, "failed")
        yield GuardedServer(server, registry, client)
    assert server.stop() in (0, -signal.SIGTERM), server.log.read_text()


def _wait_for_state(client: httpx.Client, name: str, state: str) -> None:
    deadline = time.monotonic() + 60
    while (now := _state(client, name)) != state:
        assert time.monotonic() < deadline, f"{name} is {now}, not {state}"
        time.sleep(0.05)


def _state(client: httpx.Client, name: str) -> str | None:
    answer = client.get(f"/v2/models/{name}")
    if answer.status_code != 200:
        return None
    state: str = answer.json()["keel"]["state"]
    return state


def _admin(client: httpx.Client, action: str, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.post(f"/v2/repository/models/{MODEL}/{action}", headers=headers)


def _served_version(guarded: GuardedServer) -> str:
    """The version that answers a real record now (the request must be served)."""
    record = dict(Registry(guarded.registry).resolve(f"{MODEL}@production").golden.inputs[0])
    answer = guarded.client.post(f"/v1/models/{MODEL}/predict", json={"instances": [record]})
    assert answer.status_code == 200, answer.text
    version: str = answer.json()["model_version"]
    return version


# -- the admin token ---------------------------------------------------------------------


def test_admin_endpoints_refuse_a_missing_wrong_or_malformed_token(
    guarded: GuardedServer, figures: Figures
) -> None:
    before = _served_version(guarded)
    answers = {
        (action, case): _admin(guarded.client, action, authorization)
        for action in ADMIN_ACTIONS
        for case, authorization in NOT_THE_TOKEN.items()
    }
    refused = {key: a for key, a in answers.items() if a.status_code == 401}
    figures.add(
        SECTION,
        "admin endpoints, token set: missing, wrong or malformed token",
        tried=len(answers),
        refused=len(refused),
        let_in=sum(a.status_code < 400 for a in answers.values()),
    )
    assert refused.keys() == answers.keys(), {
        key: (a.status_code, a.text) for key, a in answers.items() if key not in refused
    }
    for answer in refused.values():
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "bearer token is required" in answer.json()["error"]
    assert _served_version(guarded) == before


def test_admin_endpoints_obey_the_right_token(guarded: GuardedServer, figures: Figures) -> None:
    """The control: the refusals above were the token's doing."""
    auth = f"Bearer {TOKEN}"
    unloaded = _admin(guarded.client, "unload", auth)
    gone = guarded.client.get(f"/v2/models/{MODEL}").status_code
    loaded = _admin(guarded.client, "load", auth)
    figures.add(
        SECTION,
        "admin endpoints, the right token (control)",
        tried=2,
        refused=sum(a.status_code >= 400 for a in (unloaded, loaded)),
        let_in=sum(a.status_code == 200 for a in (unloaded, loaded)),
    )
    assert unloaded.status_code == 200, unloaded.text
    assert gone == 404
    assert loaded.status_code == 200, loaded.text
    assert _served_version(guarded) == loaded.json()["version"]


def test_with_no_token_configured_the_admin_endpoints_are_off(
    demo_registry: Path, tmp_path: Path, figures: Figures
) -> None:
    server = start_server(
        demo_registry, (f"{MODEL}@production",), tmp_path / "server.log",
        KEEL_SERVER__WATCH_INTERVAL_S="0",
    )  # fmt: skip
    try:
        server.wait_ready()
        with server.client() as client:
            tries = [*NOT_THE_TOKEN.values(), "Bearer None", "Bearer null", f"Bearer {TOKEN}"]
            answers = [_admin(client, a, t) for a in ADMIN_ACTIONS for t in tries]
            still_served = client.get(f"/v2/models/{MODEL}/ready").status_code
    finally:
        assert server.stop() in (0, -signal.SIGTERM), server.log.read_text()
    figures.add(
        SECTION,
        "admin endpoints, no token configured",
        tried=len(answers),
        refused=sum(a.status_code == 401 for a in answers),
        let_in=sum(a.status_code < 400 for a in answers),
    )
    assert [a.status_code for a in answers] == [401] * len(answers)
    assert all("disabled" in a.json()["error"] for a in answers)
    assert still_served == 200


def test_the_token_is_compared_in_constant_time() -> None:
    """The token never meets ``==``: only ``hmac.compare_digest``, whose time does not
    depend on where the first differing byte is."""
    tree = ast.parse(inspect.getsource(repository_routes))
    digests = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "compare_digest"
    ]
    assert digests, "the admin token is not compared with compare_digest"
    secrets = {
        name.id for call in digests for arg in call.args for name in ast.walk(arg)
        if isinstance(name, ast.Name)
    }  # fmt: skip
    secrets |= {"token"}
    for node in ast.walk(tree):
        # ``token is None`` asks whether one is set, and reveals nothing of it.
        if isinstance(node, ast.Compare) and not all(
            isinstance(op, ast.Is | ast.IsNot) for op in node.ops
        ):
            named = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert not named & secrets, f"{ast.unparse(node)} compares the token directly"


# -- what answers give away --------------------------------------------------------------

NAMES = (MODEL, REFUSED, "no-such-model")
VERSIONS = ("no-such-version", "0", "..", "%2e%2e", "a" * 300)
BODIES = (
    b"",
    b"{",
    b"\xff\xfe",
    b"[]",
    b'{"instances": "x"}',
    b'{"instances": [{"mean radius": "x"}]}',
    b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": "x"}]}',
    b'{"parameters": "x"}',
    b'{"parameters": {"version": "no-such-version"}}',
    b'{"parameters": {"version": "../../../etc"}}',
    # Past what Python's parsers and repr() take: 4,300 digits, a thousand levels.
    b'{"instances": [{"mean radius": ' + b"1" * 5000 + b"}]}",
    b'{"instances": [{"mean radius": NaN, "x": ' + b"[" * 900 + b"]" * 900 + b"}]}",
    b'{"parameters": {"version": ' + b"[" * 1000 + b"]" * 1000 + b"}}",
    b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": '
    + b"[" * 1000
    + b"]" * 1000
    + b', "data": [1]}]}',
    b"[" * 100_000,
)
Request = tuple[str, str, bytes]


def _model_requests(name: str, selector: str) -> list[Request]:
    base = f"/models/{name}{selector}"
    gets = [("GET", f"/v2{base}{suffix}", b"") for suffix in ("", "/ready", "/drift")]
    posts = [
        ("POST", f"/{api}{base}/{action}", body)
        for api, action in (("v1", "predict"), ("v2", "infer"))
        for body in BODIES
    ]
    return gets + posts + [("DELETE", f"/v2{base}", b""), ("PUT", f"/v1{base}/predict", b"")]


def _bad_requests(served_label: str) -> list[Request]:
    """Every route, with names, versions and bodies it cannot serve; admin calls authorised."""
    requests: list[Request] = [
        ("GET", path, b"")
        for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json")
    ]
    selectors = ("", *(f"/versions/{v}" for v in (served_label, *VERSIONS)))
    for name in NAMES:
        requests.append(("GET", f"/v2/models/{name}/shadow", b""))
        requests += [r for selector in selectors for r in _model_requests(name, selector)]
        requests += [("POST", f"/v2/repository/models/{name}/load", body) for body in BODIES]
    # Unloading a served model is no bad input: only the unknown one is asked to go.
    requests += [("POST", "/v2/repository/models/no-such-model/unload", body) for body in BODIES]
    return requests


def _shown(answer: httpx.Response) -> str:
    """An answer's text, less a refused version's reason in its model metadata: that one
    is pinned apart (``test_a_refused_versions_metadata_quotes_no_path``)."""
    if answer.status_code != 200 or '"failure"' not in answer.text:
        return answer.text
    metadata = answer.json()
    metadata["keel"]["failure"] = None
    return json.dumps(metadata)


def test_no_answer_quotes_a_path_or_a_stack_trace(
    guarded: GuardedServer, tmp_path_factory: pytest.TempPathFactory, figures: Figures
) -> None:
    paths = {str(guarded.registry), str(REPOSITORY), str(tmp_path_factory.getbasetemp())}
    leaks = (*paths, "Traceback", 'File "')
    label = _served_version(guarded)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    requests = _bad_requests(label)
    statuses: list[int] = []
    quoting: list[tuple[Request, int, str]] = []
    for method, path, body in requests:
        answer = guarded.client.request(method, path, content=body, headers=auth)
        statuses.append(answer.status_code)
        if any(leak in _shown(answer) for leak in leaks):
            quoting.append(((method, path, body), answer.status_code, answer.text[:300]))
    figures.add(
        SECTION,
        "every route: bad names, versions and bodies; a refused version",
        tried=len(requests),
        refused=sum(status >= 400 for status in statuses),
        leaks=len(quoting),
    )
    assert not quoting, quoting
    # The refused version answers 503; nothing here is the server's own failure.
    assert not [s for s in statuses if s >= 500 and s != 503], statuses


def test_a_refused_versions_metadata_quotes_no_path(guarded: GuardedServer) -> None:
    failure = guarded.client.get(f"/v2/models/{REFUSED}").json()["keel"]["failure"]
    assert "is a pickle" in failure
    assert str(guarded.registry) not in failure


@pytest.mark.parametrize(
    ("message", "answered"),
    [
        ("/srv/keel/registry/m/v1/model.onnx is a pickle", "model.onnx is a pickle"),
        ("no published version in /srv/keel/registry", "no published version in registry"),
        ("registry file:///srv/keel/registry is unreadable", "registry registry is unreadable"),
    ],
)
def test_an_error_answer_keeps_only_a_paths_last_part(message: str, answered: str) -> None:
    assert without_paths(message) == answered


@pytest.mark.parametrize(
    "message",
    [
        "cannot read a/b from s3://bucket/prefix: boom",
        "look like http://HOST:PORT/v2/models/NAME",
        "m@0123abc/20260101T000000Z: file model.onnx is missing",
        "names may not contain '/'",
    ],
)
def test_an_error_answer_keeps_urls_versions_and_slashes(message: str) -> None:
    assert without_paths(message) == message
