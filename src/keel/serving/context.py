"""What every request handler reads: the model manager, the settings, deadlines, routing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.requests import Request

from keel.errors import ProtocolError
from keel.serving.model_manager import ModelManager
from keel.serving.served_version import ServedVersion
from keel.settings import Settings

VERSION_HEADER = "x-keel-model-version"
DEADLINE_HEADER = "x-keel-deadline-ms"


@dataclass
class ServerState:
    """Shared by every handler through ``app.state.keel``."""

    manager: ModelManager
    settings: Settings
    shutting_down: bool = False


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.keel
    return state


def target_version(request: Request, state: ServerState) -> ServedVersion:
    """The version a request asks for: path version, else the header, else the default."""
    name = request.path_params["name"]
    selector = request.path_params.get("version") or request.headers.get(VERSION_HEADER)
    return state.manager.find(name, selector)


def deadline_of(request: Request, state: ServerState) -> float:
    """The absolute loop time by which the answer must be ready."""
    raw = request.headers.get(DEADLINE_HEADER)
    if raw is None:
        milliseconds = state.settings.server.default_deadline_ms
    else:
        try:
            milliseconds = float(raw)
        except ValueError:
            raise ProtocolError(f"{DEADLINE_HEADER} {raw!r} is not a number") from None
        if not milliseconds > 0:
            raise ProtocolError(f"{DEADLINE_HEADER} must be a positive number of milliseconds")
    return asyncio.get_running_loop().time() + milliseconds / 1000.0
