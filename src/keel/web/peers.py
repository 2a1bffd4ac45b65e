"""A worker's view of the other workers of its server: who is ready, and their figures.

Each worker answers only the requests it accepted, so anything that describes
the server (``/metrics``, statistics, drift, readiness) needs the others. A
worker asks each of them over its private socket (``run_dir``) for its own
figures, all at once and for at most ``STATE_TIMEOUT_S``: a worker that is
restarting, or too busy to answer in time, is left out of that answer and
counted as missing (``keel_workers_reporting``), never waited for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import orjson

from keel.shadow.http_client import CandidateHTTPError, HTTPPool
from keel.web.run_dir import STATE_PATH, RunDir

log = logging.getLogger("keel.web")

STATE_TIMEOUT_S = 2.0
# A repository call passed on to the others: loading a version may take this long.
FORWARD_TIMEOUT_S = 600.0


class Peers:
    """Worker ``index`` of ``count``, sharing ``run_dir`` with the others."""

    def __init__(self, run_dir: RunDir, index: int, count: int) -> None:
        self.run_dir = run_dir
        self.index = index
        self.count = count
        self.socket_path = run_dir.socket_path(index)
        # What each other worker sent last: stood in for it when it is too busy to answer
        # in time, so that sums over the workers never drop for a slow answer.
        self._last: dict[tuple[int, tuple[str, ...]], dict[str, Any]] = {}
        self._pools = {
            k: HTTPPool(f"http://worker-{k}", size=1, unix_path=run_dir.socket_path(k))
            for k in range(count)
            if k != index
        }

    def mark_ready(self, ready: bool) -> None:
        self.run_dir.mark_ready(self.index, ready)
        if ready:
            # The last worker to be ready opens the gate, whether or not a probe asks.
            self.run_dir.started(self.count)

    def started(self) -> bool:
        """Whether every worker has been ready at once: the server's readiness gate."""
        return self.run_dir.started(self.count)

    def others_ready(self) -> bool:
        """Whether any other worker is ready now."""
        return any(k != self.index for k in self.run_dir.ready_workers(self.count))

    def details(self) -> dict[str, Any]:
        """The workers as the readiness answer describes them."""
        restarts = self.run_dir.restarts(self.count)
        return {
            "configured": self.count,
            "ready": len(self.run_dir.ready_workers(self.count)),
            "restarts": sum(restarts),
        }

    async def states(self, parts: Sequence[str]) -> list[dict[str, Any]]:
        """Every other worker's figures, the ``parts`` named (``worker_figures.FIGURES``): as
        they arrive, or the last it sent when it does not answer in time (then ``"fresh"`` is
        false); none of a worker that is gone."""
        asked = tuple(parts)
        answers = await asyncio.gather(
            *(self._state(k, pool, asked) for k, pool in self._pools.items())
        )
        return [figures for figures in answers if figures is not None]

    async def _state(
        self, index: int, pool: HTTPPool, parts: tuple[str, ...]
    ) -> dict[str, Any] | None:
        """The worker's figures, or its last when it is too slow, or none."""
        try:
            async with asyncio.timeout(STATE_TIMEOUT_S):
                status, body = await pool.request("GET", f"{STATE_PATH}?parts={','.join(parts)}")
        except TimeoutError:
            log.warning("worker %d sent no figures in time: its last stand in", index)
            last = self._last.get((index, parts))
            return None if last is None else {**last, "fresh": False}
        except CandidateHTTPError as exc:
            # Not listening: restarting, or gone. What it counted went with it.
            log.debug("worker %d gave no figures: %s", index, exc)
            for key in [key for key in self._last if key[0] == index]:
                del self._last[key]
            return None
        if status != 200:
            log.warning("worker %d answered its figures with %d", index, status)
            return None
        state: dict[str, Any] = orjson.loads(body)
        self._last[index, parts] = state
        return {**state, "fresh": True}

    async def forward(
        self, method: str, path: str, body: bytes, headers: list[tuple[str, str]]
    ) -> dict[int, str]:
        """Make the same request of every other worker; what went wrong, by worker (none: {})."""

        async def send(index: int, pool: HTTPPool) -> str | None:
            try:
                async with asyncio.timeout(FORWARD_TIMEOUT_S):
                    status, answer = await pool.request(method, path, body, headers=headers)
            except (CandidateHTTPError, TimeoutError) as exc:
                return str(exc) or "no answer in time"
            if status == 200:
                return None
            try:
                return str(orjson.loads(answer)["error"])
            except (ValueError, KeyError, TypeError):
                return f"answered {status}"

        indexes = list(self._pools)
        problems = await asyncio.gather(*(send(k, self._pools[k]) for k in indexes))
        return {k: problem for k, problem in zip(indexes, problems, strict=True) if problem}

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
