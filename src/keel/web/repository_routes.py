"""The model-repository extension: the index, load and unload, behind a bearer token."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import NotReady, ProtocolError, Unauthorized
from keel.registry import parse_ref
from keel.serving.served_version import ServedVersion, VersionState
from keel.settings import Settings
from keel.web.content_coding import decoded_body
from keel.web.context import ServerState, state_of
from keel.web.http_errors import without_paths
from keel.web.request_body import read_body

ADMIN_BODY_LIMIT = 64 * 1024
# The states of the repository index, as Triton's clients know them.
_INDEX_STATES = {
    VersionState.LOADING: "LOADING",
    VersionState.READY: "READY",
    VersionState.FAILED: "UNAVAILABLE",
    VersionState.RETIRED: "UNAVAILABLE",
}


def authorise(settings: Settings, authorization: str) -> None:
    """Refuse a call whose Authorization (a header, or gRPC metadata) lacks the admin token."""
    token = settings.admin_token
    if token is None:
        # With no token configured the endpoints are off, not open.
        raise Unauthorized("the model-repository endpoints are disabled (no admin token set)")
    scheme, _, given = authorization.partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected):
        raise Unauthorized("a valid bearer token is required")


def _authorise(request: Request) -> None:
    authorise(state_of(request).settings, request.headers.get("authorization", ""))


async def load(request: Request) -> Response:
    """Load (or move to) the version named by ``parameters.version`` (an alias by default)."""
    _authorise(request)
    name = request.path_params["name"]
    body = await _body(request)
    state = state_of(request)
    version = await load_version(state, name, _selector(body), _forwarding(request), body)
    return Response(
        orjson.dumps({"name": name, "version": version.label, "ready": True}),
        media_type="application/json",
    )


async def unload(request: Request) -> Response:
    _authorise(request)
    name = request.path_params["name"]
    await unload_model(state_of(request), name, _forwarding(request))
    return Response(orjson.dumps({"name": name, "unloaded": True}), media_type="application/json")


def _forwarding(request: Request) -> str | None:
    """The Authorization to pass a call on to the other workers with; None when it came
    from one of them (it is that worker's to pass on)."""
    if request.state.private:
        return None
    return request.headers.get("authorization", "")


async def load_version(
    state: ServerState,
    name: str,
    selector: str,
    authorization: str | None,
    body: bytes | None = None,
) -> ServedVersion:
    """Load ``name@selector`` here and, given the caller's ``authorization``, in every other
    worker; the version loaded, or NotReady saying why not."""
    async with state.repository_lock:
        version = await state.manager.load(parse_ref(f"{name}@{selector}"))
    if not version.ready:
        raise NotReady(f"{name}@{selector} failed to load: {version.failure}")
    if body is None:
        body = orjson.dumps({"parameters": {"version": selector}})
    await _in_every_worker(
        state, name, authorization, body, f"{name}@{selector} was loaded", ("load", selector)
    )
    return version


async def unload_model(state: ServerState, name: str, authorization: str | None) -> None:
    """Unload ``name`` here and, given the caller's ``authorization``, in every other worker."""
    async with state.repository_lock:
        await state.manager.unload(name)
    await _in_every_worker(
        state, name, authorization, b"", f"{name} was unloaded", ("unload", None)
    )


async def _in_every_worker(
    state: ServerState,
    name: str,
    authorization: str | None,
    body: bytes,
    done: str,
    call: tuple[str, str | None],
) -> None:
    """Pass a load or unload on to the server's other workers, so that all of them serve alike,
    and note it for any worker started later."""
    peers = state.peers
    if peers is None or authorization is None:
        return
    action, selector = call
    peers.run_dir.record_repository_call(action, name, selector)
    path = f"/v2/repository/models/{name}/{action}"
    problems = await peers.forward("POST", path, body, [("Authorization", authorization)])
    if problems:
        said = "; ".join(f"worker {k}: {without_paths(p)}" for k, p in sorted(problems.items()))
        raise NotReady(
            f"{done} in worker {peers.index} but not in every other ({said}); "
            "the call may be repeated"
        )


async def index(request: Request) -> Response:
    """Every served version of every model, and its state (``{"ready": true}``: ready ones)."""
    _authorise(request)
    body = await _body(request)
    entries = index_entries(state_of(request), _ready_only(body))
    return Response(orjson.dumps(entries), media_type="application/json")


def index_entries(state: ServerState, ready_only: bool) -> list[dict[str, str]]:
    """The repository index: each served version (each ready one), its state, why it failed."""
    entries = []
    for version in state.manager.versions():
        if ready_only and not version.ready:
            continue
        entry = {
            "name": version.name,
            "version": version.label,
            "state": _INDEX_STATES[version.state],
        }
        if version.failure is not None:
            entry["reason"] = without_paths(version.failure)
        entries.append(entry)
    return entries


def _ready_only(body: bytes) -> bool:
    payload = _json_object(body)
    ready = payload.get("ready", False) if isinstance(payload, dict) else None
    if not isinstance(ready, bool):
        raise ProtocolError('the body must be {} or {"ready": true|false}')
    return ready


def _json_object(body: bytes) -> object:
    """An admin body's JSON, an empty object when the body is empty (ProtocolError if not JSON)."""
    if not body.strip():
        return {}
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"the body is not valid JSON: {exc}") from None


async def _body(request: Request) -> bytes:
    """The request body, inflated if it came compressed, under the admin body limit."""
    body = await read_body(request.receive, request.headers, ADMIN_BODY_LIMIT)
    content_encoding = request.headers.get("content-encoding")
    if content_encoding is not None:
        body = decoded_body(body, content_encoding, ADMIN_BODY_LIMIT)
    return body


def _selector(body: bytes) -> str:
    """The version or alias a load body names (``production`` when it names none)."""
    payload = _json_object(body)
    parameters = payload.get("parameters", {}) if isinstance(payload, dict) else None
    if not isinstance(parameters, dict):
        raise ProtocolError('the body must be {"parameters": {"version": "..."}}')
    return selector_of(parameters)


def selector_of(parameters: Mapping[str, object]) -> str:
    """The version or alias a load's parameters name (``production`` when they name none).

    ``version`` is the one parameter: Triton's others (a ``config`` to override, model
    ``file:`` contents) would change a published model, which keel never does.
    """
    unknown = sorted(key for key in parameters if key != "version")
    if unknown:
        raise ProtocolError(
            f"unknown load parameter {', '.join(map(repr, unknown))}: the one parameter is "
            "'version' (a published version or an alias); keel never changes a published model"
        )
    selector = parameters.get("version", "production")
    # Not str() of whatever came: a list nested a thousand deep has no str() (a 500).
    if not isinstance(selector, str) or not selector:
        raise ProtocolError("the load parameter 'version' must be a version or an alias")
    return selector


def repository_routes() -> list[Route]:
    return [
        Route("/v2/repository/index", index, methods=["POST"]),
        Route("/v2/repository/models/{name}/load", load, methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", unload, methods=["POST"]),
    ]
