"""Every served model's shadow candidate and the prediction log they share: start and stop."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from keel.errors import KeelError
from keel.logstore.opening import open_log_store
from keel.logstore.writer import PredictionLog
from keel.registry import Registry
from keel.serving.activity import RequestActivity
from keel.settings import Settings
from keel.shadow.candidates import candidate_for
from keel.shadow.mirror import ShadowMirror

if TYPE_CHECKING:
    from keel.serving.model_manager import ModelManager

log = logging.getLogger("keel.shadow")

# How often shadow start-up looks again for a primary that is not served yet.
STARTUP_POLL_S = 0.5


class Shadowing:
    """The mirrors of the models that have a shadow candidate, by model name.

    ``mirrors`` is empty until the candidates have started, and stays empty when
    no shadow is configured: then no log store is opened at all.
    """

    def __init__(self, settings: Settings, registry: Registry, activity: RequestActivity) -> None:
        self.settings = settings
        self.registry = registry
        self.activity = activity
        self.mirrors: dict[str, ShadowMirror] = {}
        self.log: PredictionLog | None = None

    async def start(self, manager: ModelManager) -> None:
        """Open the log and start each candidate; a candidate that cannot start is logged, unused.

        Runs once the primaries are ready, so a candidate never delays readiness.
        """
        shadow = self.settings.shadow
        if not shadow.targets:
            return
        loop = asyncio.get_running_loop()
        store = await loop.run_in_executor(None, open_log_store, shadow.log.url)
        self.log = PredictionLog(store, shadow.log)
        await self.log.start()
        # A primary the registry could not give yet is retried by the model manager;
        # its candidate starts once it is served, not never.
        waiting = sorted({t.model for t in shadow.targets} - set(manager.routes))
        if waiting:
            log.warning("shadow candidates wait until %s are served", ", ".join(waiting))
        while any(t.model not in manager.routes for t in shadow.targets):
            await asyncio.sleep(STARTUP_POLL_S)
        for target in shadow.targets:
            try:
                candidate = candidate_for(target, self.registry, self.settings)
            except KeelError as exc:
                log.error("shadow candidate for %s is not used: %s", target.model, exc)
                continue
            # Listed before it starts, so GET .../shadow shows a candidate still loading
            # (or one that failed its checks) as not ready; nothing is mirrored to it then.
            mirror = ShadowMirror(target.model, candidate, shadow, self.log, self.activity)
            self.mirrors[target.model] = mirror
            try:
                info = await candidate.start()
            except KeelError as exc:
                log.error("shadow candidate for %s is not used: %s", target.model, exc)
                continue
            if info is None:
                continue
            self.log.add_candidate(info)
            mirror.start()
            log.info(
                "mirroring %.0f%% of %s's requests to %s (%s, version %s)",
                shadow.sample_rate * 100,
                target.model,
                candidate.source,
                candidate.kind,
                candidate.version,
            )

    async def close(self) -> None:
        """Stop mirroring, then write every accepted record before the log closes."""
        await asyncio.gather(*(mirror.close() for mirror in self.mirrors.values()))
        if self.log is not None:
            await self.log.close()
