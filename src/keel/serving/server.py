"""Running the app under uvicorn, with readiness dropped first on SIGTERM and a bounded drain."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

import uvicorn

from keel.registry import Registry
from keel.serving.app import create_app
from keel.serving.context import ServerState
from keel.serving.model_manager import ModelManager
from keel.settings import Settings


class KeelServer(uvicorn.Server):
    """uvicorn's server, but readiness turns false the moment a stop signal arrives.

    Kubernetes stops routing to a pod whose readiness fails; uvicorn then stops
    accepting, finishes in-flight requests within the grace period, and the
    lifespan drains the batchers.
    """

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.keel_state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.keel_state.shutting_down = True
        super().handle_exit(sig, frame)


def serve(refs: Sequence[str], settings: Settings, registry: Registry) -> None:
    """Serve ``refs`` until a stop signal; blocks."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.setswitchinterval(settings.server.switch_interval_ms / 1000.0)
    # The cores this process may run on, not the machine's: taskset and cgroups
    # pinning leave fewer.
    threads = settings.server.inference_threads or len(os.sched_getaffinity(0)) or 1
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="keel-infer")
    manager = ModelManager(registry, settings, executor)
    app = create_app(manager, settings, refs)
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        # keel logs no client addresses, so rewriting them from X-Forwarded-For is
        # work for nothing on every request.
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.server.grace_period_s) or None,
        log_level="info",
    )
    try:
        KeelServer(config, app.state).run()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
