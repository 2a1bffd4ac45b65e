"""Shadow candidates: what mirrored requests are sent to, in this process or on another server.

A candidate answers model inputs (the tensors the primary ran on) with outputs,
or raises. It is never on the primary's path: its failures are the mirror's to
count, and it gets its own threads and connections so that it cannot take the
primary's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np
import orjson

from keel.background import lower_this_thread
from keel.errors import KeelError, ProtocolError
from keel.logstore import CandidateInfo
from keel.logstore.records import Tensors
from keel.monitoring.process import resident_bytes
from keel.registry import Registry
from keel.serving.protocols.datatypes import datatype_of, dtype_of
from keel.serving.protocols.paths import match
from keel.serving.served_version import ServedVersion, retire_version, start_version
from keel.settings import Settings, ShadowSettings, ShadowTarget
from keel.shadow.http_client import CandidateHTTPError, HTTPPool

log = logging.getLogger("keel.shadow")


Decode = Callable[[], dict[str, np.ndarray]]
"""Turns a candidate's answer into its outputs (``Candidate.call``)."""


class CandidateFailed(KeelError):
    """The candidate answered with an error (not a timeout)."""


class Candidate(Protocol):
    """Where one model's mirrored requests go."""

    kind: str
    source: str

    @property
    def version(self) -> str | None:
        """The candidate's version label, once known."""
        ...

    @property
    def ready(self) -> bool: ...

    async def start(self) -> CandidateInfo | None:
        """Load or reach the candidate; its facts for the log, or None if it is not usable."""
        ...

    async def call(
        self, inputs: Tensors, timeout_s: float, traceparent: str | None = None
    ) -> Decode:
        """Call the candidate; once it has answered, what turns the answer into its outputs.

        Raises on error, TimeoutError past ``timeout_s``; the decoding raises
        ``CandidateFailed`` for an answer it cannot read. Split in two so that the
        mirror times the call alone and decodes when the serving loop is quiet.
        ``traceparent``: the W3C header a call to another server carries, when traced.
        """
        ...

    async def close(self) -> None: ...


def server_name() -> str:
    """Which server (host and process) a log record or candidate came from."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LocalCandidate:
    """A registry version loaded in this process, with its own batcher and threads.

    It goes through every check a primary does (hashes, golden examples,
    warm-up). Its model is always called on its own worker threads, never on the
    event loop, however fast it is: the loop belongs to the primary.
    """

    kind = "in-process"

    def __init__(
        self, ref: str, registry: Registry, settings: Settings, shadow: ShadowSettings
    ) -> None:
        self.source = ref
        self._registry = registry
        batching = settings.batching.model_copy(update={"inline_below_us": 0.0})
        self._settings = settings.model_copy(update={"batching": batching})
        # At the lowest priority: the candidate's model runs in time the primary leaves.
        self._executor = ThreadPoolExecutor(
            max_workers=shadow.threads,
            thread_name_prefix="keel-shadow",
            initializer=lower_this_thread,
        )
        self.served: ServedVersion | None = None

    @property
    def version(self) -> str | None:
        return None if self.served is None else self.served.label

    @property
    def ready(self) -> bool:
        return self.served is not None and self.served.ready

    async def start(self) -> CandidateInfo | None:
        loop = asyncio.get_running_loop()
        before = resident_bytes()
        metadata = await loop.run_in_executor(self._executor, self._registry.resolve, self.source)
        self.served = ServedVersion(metadata)
        await start_version(
            self.served,
            self._registry,
            self._settings,
            self._executor,
            model_executor=self._executor,
        )
        if not self.served.ready:
            log.error(
                "shadow candidate %s is not used: %s", metadata.ref, self.served.failure or "?"
            )
            return None
        return CandidateInfo(
            model=metadata.name,
            candidate_version=self.served.label,
            kind=self.kind,
            started_at=time.time(),
            # What loading, checking and warming the candidate added to this process.
            rss_bytes=max(resident_bytes() - before, 0),
            source=self.source,
            host=server_name(),
        )

    async def call(
        self, inputs: Tensors, timeout_s: float, traceparent: str | None = None
    ) -> Decode:
        # In this process: the shadow call's own span is the whole of its trace.
        assert self.served is not None
        batcher = self.served.require_batcher()
        deadline = asyncio.get_running_loop().time() + timeout_s
        # The batcher's deadline withdraws a request still queued; wait_for also
        # covers one whose model call hangs.
        outputs = await asyncio.wait_for(batcher.submit(dict(inputs), deadline), timeout_s)
        return lambda: outputs

    async def close(self) -> None:
        if self.served is not None:
            await retire_version(self.served, grace_s=1.0)
        self._executor.shutdown(wait=False, cancel_futures=True)


class RemoteCandidate:
    """A model on another Open Inference Protocol server, called with v2 JSON ``infer``.

    ``url`` is the model's base URL, ``http://HOST:PORT/v2/models/NAME`` with an
    optional ``/versions/V``. Connections are kept alive, at most the mirror's
    concurrency of them (one per call in flight).
    """

    kind = "remote"

    def __init__(self, url: str, shadow: ShadowSettings) -> None:
        self.source = url.rstrip("/")
        parts = urlsplit(self.source)
        self._path = parts.path
        # The model's infer path must be one keel itself would route.
        route = match(f"{self._path}/infer")
        if parts.scheme not in ("http", "https") or route is None or route[0] != "v2_infer":
            raise KeelError(
                f"shadow URL {url!r} must look like http://HOST:PORT/v2/models/NAME"
                "[/versions/VERSION]"
            )
        _, self.model_name, self._pinned = route
        self._seen: str | None = self._pinned
        self._pool = HTTPPool(self.source, shadow.concurrency)

    @property
    def version(self) -> str | None:
        # Until the server has said which version it runs, records name it by URL,
        # so that the report can still tell this candidate's records apart.
        return self._seen or self.source

    @property
    def ready(self) -> bool:
        # A remote candidate is tried on every mirrored request: one that is down
        # now is logged as failing, and is used again as soon as it answers.
        return True

    async def start(self) -> CandidateInfo | None:
        try:
            status, body = await asyncio.wait_for(self._pool.request("GET", self._path), 5.0)
            if status == 200:
                versions = orjson.loads(body).get("versions") or []
                if self._pinned is None and len(versions) == 1:
                    self._seen = str(versions[0])
            else:
                log.warning("shadow candidate %s answered %d", self.source, status)
        except (CandidateHTTPError, TimeoutError, orjson.JSONDecodeError, AttributeError) as exc:
            log.warning("shadow candidate %s is not reachable yet: %s", self.source, exc)
        return CandidateInfo(
            model=self.model_name,
            candidate_version=self.version or self.source,
            kind=self.kind,
            started_at=time.time(),
            source=self.source,
            host=server_name(),
        )

    async def call(
        self, inputs: Tensors, timeout_s: float, traceparent: str | None = None
    ) -> Decode:
        body = orjson.dumps(
            {"inputs": [_json_tensor(n, a) for n, a in inputs.items()]},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        headers = () if traceparent is None else (("traceparent", traceparent),)
        try:
            # A timeout scope rather than wait_for: no task per call on the serving loop.
            async with asyncio.timeout(timeout_s):
                status, answer = await self._pool.request(
                    "POST", f"{self._path}/infer", body, headers=headers
                )
        except CandidateHTTPError as exc:
            raise CandidateFailed(str(exc)) from None
        if status != 200:
            text = answer[:300].decode("utf-8", errors="replace")
            raise CandidateFailed(f"HTTP {status}: {text}")
        return functools.partial(self._decode, answer)

    def _decode(self, answer: bytes) -> dict[str, np.ndarray]:
        try:
            payload = orjson.loads(answer)
            version = payload.get("model_version")
            if version:
                self._seen = str(version)
            return {o["name"]: _tensor_of(o) for o in payload["outputs"]}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ProtocolError) as exc:
            raise CandidateFailed(f"unreadable infer response: {exc}") from None

    async def close(self) -> None:
        self._pool.close()


def _json_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    data = np.ascontiguousarray(array).reshape(-1)
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": datatype_of(array.dtype),
        # orjson writes native numeric arrays from their buffer; strings go as a list.
        "data": data.astype(str).tolist()
        if data.dtype.kind in "OUS" or not data.dtype.isnative
        else data,
    }


def _tensor_of(output: dict[str, Any]) -> np.ndarray:
    dtype = dtype_of(str(output["datatype"]))
    shape = [int(d) for d in output["shape"]]
    return np.asarray(output["data"], dtype=dtype).reshape(shape)


def candidate_for(
    target: ShadowTarget, registry: Registry, settings: Settings
) -> LocalCandidate | RemoteCandidate:
    """The candidate a shadow target names."""
    if target.url:
        return RemoteCandidate(target.url, settings.shadow)
    return LocalCandidate(target.candidate, registry, settings, settings.shadow)
