"""What every request handler reads: the model manager, the data plane, the settings, metrics."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from starlette.requests import Request

from keel.monitoring.exposition import metrics_registry
from keel.serving.activity import RequestActivity
from keel.serving.data_plane import DataPlane
from keel.serving.exposition import serving_families
from keel.serving.model_manager import ModelManager
from keel.serving.served_version import ServedVersion
from keel.settings import Settings
from keel.shadow.exposition import shadow_families
from keel.shadow.shadowing import Shadowing
from keel.web.peers import Peers


@dataclass
class ServerState:
    """Shared by every handler through ``app.state.keel``."""

    manager: ModelManager
    settings: Settings
    shadowing: Shadowing = field(init=False)
    # Every inference, whatever its route, goes through it.
    plane: DataPlane = field(init=False)
    # What GET /metrics collects: each owner's families (engine, shadow), registered once.
    metrics: CollectorRegistry = field(init=False)
    # Inference requests in progress: shadow bookkeeping waits for none (see activity).
    activity: RequestActivity = field(default_factory=RequestActivity)
    # The other workers of the server, when it runs several (``keel serve --workers``).
    peers: Peers | None = None
    # Repository loads and unloads one at a time: a call another worker passes on waits
    # while a restarted worker repeats the earlier ones, so the order is the same in all.
    repository_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # This worker's own families, without the drift verdicts, to send the other workers.
    local_metrics: CollectorRegistry | None = field(init=False, default=None)
    shutting_down: bool = False
    # Set once the served versions have answered real requests over HTTP (self_warmup).
    warmed: bool = False

    def __post_init__(self) -> None:
        self.shadowing = Shadowing(self.settings, self.manager.registry, self.activity)
        self.plane = DataPlane(
            self.manager, self.settings.server.default_deadline_ms, self.shadowing.mirrors
        )
        self.metrics = metrics_registry(
            functools.partial(serving_families, self.manager),
            functools.partial(shadow_families, self.shadowing),
        )
        if self.peers is not None:
            self.local_metrics = metrics_registry(
                functools.partial(serving_families, self.manager, judged=False),
                functools.partial(shadow_families, self.shadowing),
            )

    @property
    def serving(self) -> bool:
        """This process is ready: every served model's default version is loaded, verified
        and warm, and it is not shutting down."""
        return self.manager.ready and self.warmed and not self.shutting_down

    @property
    def ready(self) -> bool:
        """Readiness: this process is ready and, at start-up, every worker of the server."""
        return self.serving and (self.peers is None or self.peers.started())


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.keel
    return state


def target_version(request: Request, state: ServerState) -> ServedVersion:
    """The version a Starlette-served request asks for (``DataPlane.find``)."""
    params = request.path_params
    return state.plane.find(params["name"], params.get("version"), request.headers)
