"""What every request handler reads: the model manager, the settings, deadlines, routing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.requests import Request

from keel.errors import ProtocolError
from keel.serving.activity import RequestActivity
from keel.serving.calls import DEADLINE_HEADER, VERSION_HEADER
from keel.serving.model_manager import ModelManager
from keel.serving.served_version import ServedVersion
from keel.settings import Settings
from keel.shadow.shadowing import Shadowing


@dataclass
class ServerState:
    """Shared by every handler through ``app.state.keel``."""

    manager: ModelManager
    settings: Settings
    shadowing: Shadowing = field(init=False)
    # Inference requests in progress: shadow bookkeeping waits for none (see activity).
    activity: RequestActivity = field(default_factory=RequestActivity)
    shutting_down: bool = False
    # Set once the served versions have answered real requests over HTTP (self_warmup).
    warmed: bool = False

    def __post_init__(self) -> None:
        self.shadowing = Shadowing(self.settings, self.manager.registry, self.activity)


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.keel
    return state


def target_version(request: Request, state: ServerState) -> ServedVersion:
    """The version a Starlette-served request asks for (see ``find_version``)."""
    params = request.path_params
    return find_version(state, params["name"], params.get("version"), request.headers)


def find_version(
    state: ServerState, name: str, path_version: str | None, headers: Mapping[str, str]
) -> ServedVersion:
    """The version a request asks for: path version, else the header, else the default."""
    return state.manager.find(name, path_version or headers.get(VERSION_HEADER))


def deadline_s_of(headers: Mapping[str, str], state: ServerState) -> float:
    """Seconds from now by which the answer must be ready: the header's, else the default.

    Relative: the batcher turns it into its loop's time (``Batcher.deadline_in``), where
    ``asyncio.get_running_loop()`` would cost every request a system call (getpid).
    """
    raw = headers.get(DEADLINE_HEADER)
    if raw is None:
        milliseconds = state.settings.server.default_deadline_ms
    else:
        try:
            milliseconds = float(raw)
        except ValueError:
            raise ProtocolError(f"{DEADLINE_HEADER} {raw!r} is not a number") from None
        if not milliseconds > 0:
            raise ProtocolError(f"{DEADLINE_HEADER} must be a positive number of milliseconds")
    return milliseconds / 1000.0
