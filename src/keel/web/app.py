"""The ASGI application: routes, the error boundary, and the lifespan (load → ready → drain).

Inference requests are answered by ``InferenceFront`` before Starlette sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keel.errors import KeelError
from keel.registry import parse_ref
from keel.serving.model_manager import ModelManager
from keel.settings import Settings
from keel.web.context import ServerState
from keel.web.drift_routes import drift_routes
from keel.web.http_errors import error_response
from keel.web.inference_front import InferenceFront
from keel.web.metrics_routes import metrics_routes
from keel.web.model_config import model_config_routes
from keel.web.openapi import openapi_route
from keel.web.peers import Peers
from keel.web.repository_routes import repository_routes
from keel.web.request_body import ClientGone
from keel.web.self_warmup import warm_over_http
from keel.web.shadow_routes import shadow_routes
from keel.web.statistics_routes import statistics_routes
from keel.web.v2_routes import v2_routes

log = logging.getLogger("keel.web")

Endpoint = Callable[[Request], Awaitable[Response]]


def guarded(endpoint: Endpoint) -> Endpoint:
    """Every error a handler raises becomes a proper HTTP answer, here and only here."""

    @functools.wraps(endpoint)
    async def handle(request: Request) -> Response:
        try:
            return await endpoint(request)
        except asyncio.CancelledError:
            raise
        except ClientGone:
            # Nobody is left to read an answer.
            return Response(status_code=400)
        except Exception as exc:  # noqa: BLE001 - the error boundary maps every exception
            return error_response(exc)

    return handle


async def _routing_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    message = (
        f"no such endpoint: {request.method} {request.url.path}"
        if status == 404
        else f"{request.method} is not allowed on {request.url.path}"
    )
    headers = getattr(exc, "headers", None) or {}
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _load(state: ServerState, refs: Sequence[str]) -> None:
    await state.manager.start(refs)
    if state.peers is not None:
        async with state.repository_lock:
            await _repeat_repository_calls(state.manager, state.peers)
    # Everything allocated so far (libraries, models, schemas) lives as long as the
    # process. Frozen, it is no longer traversed by every full collection, which
    # otherwise stalls the loop for milliseconds under load (a p99 outlier).
    gc.collect()
    gc.freeze()
    log.info(
        "%d long-lived objects moved out of the garbage collector's way", gc.get_freeze_count()
    )
    # Last before ready: a full collection walks the whole heap and leaves the request
    # path cold in the caches, so the warm-up requests run after it, not before.
    server = state.settings.server
    peers = state.peers
    unix_path = peers.socket_path if peers is not None else None
    await warm_over_http(state.manager, server.host, server.port, unix_path)
    state.warmed = True
    if peers is not None and state.serving:
        peers.mark_ready(True)
    # Candidates load after the primaries are ready: a shadow never delays readiness.
    await state.shadowing.start(state.manager)


async def _repeat_repository_calls(manager: ModelManager, peers: Peers) -> None:
    """A worker started after repository loads or unloads makes them too, so that it serves
    what the other workers serve (the aliases as they stand now)."""
    for call in peers.run_dir.repository_calls():
        name, selector = str(call["name"]), call["selector"]
        try:
            if call["action"] == "load":
                version = await manager.load(parse_ref(f"{name}@{selector}"))
                if not version.ready:
                    log.warning("repeating the load of %s@%s: %s", name, selector, version.failure)
            else:
                await manager.unload(name)
        except KeelError as exc:
            log.warning("could not repeat the repository's %s of %s: %s", call["action"], name, exc)


def create_app(
    manager: ModelManager,
    settings: Settings,
    refs: Sequence[str],
    peers: Peers | None = None,
) -> InferenceFront:
    """The keel server for the models ``refs`` name; they load in the background at start-up.

    ``peers``: the server's other workers, when this process is one of several.
    """
    state = ServerState(manager=manager, settings=settings, peers=peers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Loading runs beside the server so liveness answers at once and
        # readiness turns true only when every model is verified and warm.
        loading = asyncio.create_task(_load(state, refs), name="keel-load-models")
        try:
            yield
        finally:
            state.shutting_down = True
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await manager.close()
            # After the primaries have drained, so every answered request was offered.
            await state.shadowing.close()
            if peers is not None:
                peers.close()
            if manager.versions():  # none when the server stopped before any loaded
                log.info("models drained and closed")

    routes = [
        *statistics_routes(),
        *v2_routes(),
        *drift_routes(),
        *shadow_routes(),
        *metrics_routes(),
        *repository_routes(),
        *model_config_routes(),
        openapi_route(),
    ]
    app = Starlette(
        routes=[Route(r.path, guarded(r.endpoint), methods=r.methods) for r in routes],
        lifespan=lifespan,
        # A path no route matches, or a method a route does not take, gets the same
        # JSON error body as every other refusal, not Starlette's plain text.
        exception_handlers={404: _routing_error, 405: _routing_error},
    )
    app.state.keel = state
    return InferenceFront(app, state, lifespan=functools.partial(lifespan, app))
