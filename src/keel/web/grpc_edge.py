"""The Open Inference Protocol over gRPC, and the standard gRPC health service.

``inference.GRPCInferenceService`` (what tritonclient.grpc, KServe and MLServer
clients call) and ``grpc.health.v1.Health`` (what a Kubernetes gRPC probe calls).
Every method answers from what the REST routes answer from: inference goes
through the data plane (one path, one set of checks, the same metrics, drift and
shadow), metadata, configuration, statistics and the repository through the
functions their routes call, so the two protocols cannot disagree.

grpcio's asyncio server runs on the HTTP server's event loop. Its thread-pool
server, each call handed to the loop, answered a fifth more calls a second on one
core, but a thread is held for the whole of a call, from before its message
arrives: 64 stalled or slow calls, or 64 open health Watches, left none for
anyone else (docs/serving.md#grpc). Here a call costs a coroutine.

Errors are keel's exceptions mapped to the protocol's status codes
(``grpc_status_of``); the message is the one REST sends. Inference requests are
counted under the endpoint ``grpc_infer`` with the HTTP status the same answer
has on REST, so a dashboard's 5xx rate and the statistics extension see gRPC too.
The deadline is the call's gRPC deadline, else ``x-keel-deadline-ms`` metadata,
else the server's default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError

import keel
from keel import errors, tracing
from keel.serving.calls import DEADLINE_HEADER, VERSION_HEADER, Call
from keel.serving.grpc_infer import GrpcInferCodec
from keel.serving.protocols.grpc_messages import (
    HEALTH_SERVICE,
    INFERENCE_SERVICE,
    health,
    inference,
)
from keel.serving.protocols.v2_grpc import parameters_of
from keel.serving.served_version import ServedVersion
from keel.web import access_log
from keel.web.addresses import address_unavailable
from keel.web.context import ServerState
from keel.web.http_errors import public_message, status_of
from keel.web.model_config import config_of
from keel.web.repository_routes import (
    authorise,
    index_entries,
    load_version,
    selector_of,
    unload_model,
)
from keel.web.statistics_routes import statistics_for
from keel.web.v2_routes import EXTENSIONS, metadata_of

log = logging.getLogger("keel.web")

ENDPOINT = "grpc_infer"
# Most specific first, as in http_errors.STATUS.
GRPC_STATUS: tuple[tuple[type[errors.KeelError], grpc.StatusCode], ...] = (
    (errors.InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ProtocolError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidName, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.AmbiguousVersion, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.Unauthorized, grpc.StatusCode.UNAUTHENTICATED),
    (errors.ModelNotFound, grpc.StatusCode.NOT_FOUND),
    (errors.NotMonitored, grpc.StatusCode.NOT_FOUND),
    (errors.PayloadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Overloaded, grpc.StatusCode.UNAVAILABLE),
    (errors.NotReady, grpc.StatusCode.UNAVAILABLE),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
)
# How often a health Watch looks at readiness for a change to send.
_WATCH_INTERVAL_S = 0.5
_SERVING = health.HealthCheckResponse(status=1)
_NOT_SERVING = health.HealthCheckResponse(status=2)
_SERVICE_UNKNOWN = health.HealthCheckResponse(status=3)

Context = grpc.aio.ServicerContext[Any, Any]
# A deadline further away than this is none: a server may report "no deadline" as
# the largest time it can hold rather than as None.
_NO_DEADLINE_S = 1e9


class CallInfo(NamedTuple):
    """What keel reads of a call's context: the handlers take this, not the context."""

    metadata: dict[str, str]
    # Seconds to the call's deadline; None when it has none.
    time_remaining: float | None
    # What the handler learnt for the access log: the model, version and request id.
    notes: dict[str, str]


Handler = Callable[[Any, CallInfo], Awaitable[Any]]
# The metadata keel reads.
_READ_METADATA = frozenset(
    {
        VERSION_HEADER,
        DEADLINE_HEADER,
        "authorization",
        "x-request-id",
        tracing.TRACEPARENT,
        tracing.TRACESTATE,
    }
)


def grpc_status_of(exc: errors.KeelError) -> grpc.StatusCode:
    for kind, code in GRPC_STATUS:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _refusal(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status and message a call that raised ``exc`` ends with, as REST words it."""
    code = grpc_status_of(exc) if isinstance(exc, errors.KeelError) else grpc.StatusCode.INTERNAL
    return code, public_message(exc)


def _call_info(context: Context) -> CallInfo:
    metadata = {
        key: value
        for key, value in context.invocation_metadata() or ()
        if key in _READ_METADATA and isinstance(value, str)
    }
    remaining: float | None = context.time_remaining()
    if remaining is not None and remaining > _NO_DEADLINE_S:
        remaining = None
    return CallInfo(metadata, remaining, {})


def _parsed(message: Any, request: bytes) -> Any:
    """``request`` as a ``message``: bytes that are none are INVALID_ARGUMENT, said once
    (grpcio's own deserializer would answer UNKNOWN and log a traceback per call)."""
    try:
        return message.FromString(request)
    except DecodeError as exc:
        name = message.DESCRIPTOR.full_name
        raise errors.ProtocolError(f"the request is not a valid {name} ({exc})") from None


class GrpcEdge:
    """The gRPC server of one process, serving ``state`` until stopped."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.plane = state.plane
        self.server: grpc.aio.Server | None = None
        # Set at the stop signal, so that a health Watch says NOT_SERVING at once.
        self._stopping = asyncio.Event()
        # Health Watches open now.
        self._watches = 0

    async def start(self, host: str, port: int, *, shared_port: bool) -> None:
        """Listen on ``host:port``, alone or (``shared_port``: workers) with SO_REUSEPORT."""
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.state.settings.server.max_body_bytes),
                # Off alone, so that a port another server holds is refused, not shared.
                ("grpc.so_reuseport", 1 if shared_port else 0),
            ],
        )
        server.add_generic_rpc_handlers((self._inference_handler(), self._health_handler()))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            server.add_insecure_port(address)
        except RuntimeError:
            # grpcio says only that it failed to bind, not why; in use is the usual reason.
            raise address_unavailable(
                host, port, "the address is in use, or not this machine's", grpc=True
            ) from None
        await server.start()
        self.server = server

    def stopping(self) -> None:
        """The stop signal came: each health Watch is told NOT_SERVING before the stop."""
        self._stopping.set()

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls and let those in progress finish, for at most ``grace_s``.

        The health Watches first: they send NOT_SERVING and end, which a stream still
        open when grpcio's stop begins would not get out.
        """
        self._stopping.set()
        deadline = time.monotonic() + min(grace_s, _WATCH_INTERVAL_S)
        while self._watches and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self.server is not None:
            await self.server.stop(grace_s)

    def _unary(self, path: str, handler: Handler, message: Any) -> grpc.RpcMethodHandler[Any, Any]:
        """``handler`` for each call of ``path``: its bytes parsed, keel's errors its status."""
        logged = self.state.settings.log.access

        async def answer(request: bytes, context: Context) -> Any:
            started = time.perf_counter()
            info = _call_info(context)
            code, answered = grpc.StatusCode.OK, None
            try:
                answered = await handler(_parsed(message, request), info)
                return answered
            except (asyncio.CancelledError, grpc.aio.AbortError):
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:  # noqa: BLE001 - the error boundary maps every exception
                code, text = _refusal(exc)
                await context.abort(code, text)
            finally:
                if logged:
                    _log_call(path, code, answered, time.perf_counter() - started, info)

        return grpc.unary_unary_rpc_method_handler(answer, response_serializer=_serialized)

    def _inference_handler(self) -> grpc.GenericRpcHandler:
        unary = {
            "ServerLive": (self.server_live, inference.ServerLiveRequest),
            "ServerReady": (self.server_ready, inference.ServerReadyRequest),
            "ModelReady": (self.model_ready, inference.ModelReadyRequest),
            "ServerMetadata": (self.server_metadata, inference.ServerMetadataRequest),
            "ModelMetadata": (self.model_metadata, inference.ModelMetadataRequest),
            "ModelInfer": (self.model_infer, inference.ModelInferRequest),
            "ModelConfig": (self.model_config, inference.ModelConfigRequest),
            "ModelStatistics": (self.model_statistics, inference.ModelStatisticsRequest),
            "RepositoryIndex": (self.repository_index, inference.RepositoryIndexRequest),
            "RepositoryModelLoad": (self.repository_load, inference.RepositoryModelLoadRequest),
            "RepositoryModelUnload": (
                self.repository_unload,
                inference.RepositoryModelUnloadRequest,
            ),
        }
        handlers = {
            method: self._unary(f"/{INFERENCE_SERVICE}/{method}", handler, message)
            for method, (handler, message) in unary.items()
        }
        # Said in words: grpcio's own answer to a method it lacks is "Method not found!".
        handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(_no_streaming)
        return grpc.method_handlers_generic_handler(INFERENCE_SERVICE, handlers)

    def _health_handler(self) -> grpc.GenericRpcHandler:
        handlers = {
            "Check": self._unary(
                f"/{HEALTH_SERVICE}/Check", self.health_check, health.HealthCheckRequest
            ),
            "Watch": grpc.unary_stream_rpc_method_handler(
                self.health_watch, response_serializer=_serialized
            ),
        }
        return grpc.method_handlers_generic_handler(HEALTH_SERVICE, handlers)

    # The inference service.

    async def server_live(self, request: Any, info: CallInfo) -> Any:
        return inference.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, info: CallInfo) -> Any:
        return inference.ServerReadyResponse(ready=self.state.ready)

    async def model_ready(self, request: Any, info: CallInfo) -> Any:
        version = self._version(request.name, request.version, info)
        ready = version.ready and not self.state.shutting_down
        return inference.ModelReadyResponse(ready=ready)

    async def server_metadata(self, request: Any, info: CallInfo) -> Any:
        return inference.ServerMetadataResponse(
            name="keel", version=keel.__version__, extensions=EXTENSIONS
        )

    async def model_metadata(self, request: Any, info: CallInfo) -> Any:
        version = self._version(request.name, request.version, info)
        metadata = metadata_of(version, self.state)
        del metadata["keel"]  # keel's own state has no place in the protocol's message
        return json_format.ParseDict(metadata, inference.ModelMetadataResponse())

    async def model_config(self, request: Any, info: CallInfo) -> Any:
        version = self._version(request.name, request.version, info)
        config = config_of(version, self.state.settings.batching)
        return json_format.ParseDict({"config": config}, inference.ModelConfigResponse())

    async def model_statistics(self, request: Any, info: CallInfo) -> Any:
        stats = await statistics_for(self.state, request.name or None, request.version or None)
        return json_format.ParseDict({"model_stats": stats}, inference.ModelStatisticsResponse())

    async def repository_index(self, request: Any, info: CallInfo) -> Any:
        self._authorise(request, info)
        entries = index_entries(self.state, request.ready)
        return json_format.ParseDict({"models": entries}, inference.RepositoryIndexResponse())

    async def repository_load(self, request: Any, info: CallInfo) -> Any:
        authorization = self._authorise(request, info)
        parameters = parameters_of(request.parameters, "load")
        await load_version(self.state, request.model_name, selector_of(parameters), authorization)
        return inference.RepositoryModelLoadResponse()

    async def repository_unload(self, request: Any, info: CallInfo) -> Any:
        authorization = self._authorise(request, info)
        parameters_of(request.parameters, "unload")
        await unload_model(self.state, request.model_name, authorization)
        return inference.RepositoryModelUnloadResponse()

    async def model_infer(self, request: Any, info: CallInfo) -> Any:
        """One inference through the data plane, counted for its version as REST's are."""
        started = time.perf_counter()
        state = self.state
        state.activity.started()
        version: ServedVersion | None = None
        status, code = 200, grpc.StatusCode.OK
        span = (
            tracing.request_span(info.metadata, started, _describe, request) if tracing.ON else None
        )
        try:
            if request.id:
                info.notes["request_id"] = request.id
            version = self._version(request.model_name, request.model_version, info)
            version.metrics.in_flight += 1
            try:
                call = Call(self._call_headers(info), b"", started, span)
                return await self.plane.infer(version, GrpcInferCodec(request), call)
            finally:
                version.metrics.in_flight -= 1
        except errors.KeelError as exc:
            status, code = status_of(exc), grpc_status_of(exc)
            if version is not None:
                version.metrics.refused(exc)
            raise
        except Exception:
            status, code = 500, grpc.StatusCode.INTERNAL
            raise
        finally:
            state.activity.finished()
            answered_at = time.perf_counter()
            if version is not None:
                version.metrics.answered(
                    ENDPOINT,
                    status,
                    answered_at - started,
                    None if span is None else tracing.trace_id(span),
                )
            if span is not None:
                _end_request_span(span, info, version, status, code, answered_at)

    # The health service.

    async def health_check(self, request: Any, info: CallInfo) -> Any:
        serving = self._serving(request.service)
        if serving is None:
            raise errors.ModelNotFound(
                f"no service {request.service!r}: ask for '' (the server), "
                f"{INFERENCE_SERVICE!r} or a served model's name"
            )
        return _SERVING if serving else _NOT_SERVING

    async def health_watch(self, request: bytes, context: Context) -> AsyncIterator[Any]:
        """The service's status now, then each change, until the call ends or the server stops.

        Ended at SIGTERM once NOT_SERVING is sent: the stop waits for calls in progress,
        and an open Watch would hold it for the whole grace period.
        """
        try:
            service = _parsed(health.HealthCheckRequest, request).service
        except errors.ProtocolError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        sent = None
        self._watches += 1
        try:
            while True:
                serving = self._serving(service)
                now = _SERVICE_UNKNOWN if serving is None else _SERVING if serving else _NOT_SERVING
                if now is not sent:
                    yield now
                    sent = now
                    # Looked at again at once: the stop may have come while it was sent.
                    continue
                if self.state.shutting_down:
                    return
                # Woken at once by a stop; otherwise readiness is looked at again shortly.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), _WATCH_INTERVAL_S)
        finally:
            self._watches -= 1

    def _serving(self, service: str) -> bool | None:
        """Whether ``service`` (the server, or a served model) serves; None if none is so called."""
        state = self.state
        if service in ("", INFERENCE_SERVICE):
            return state.ready
        if service not in state.manager.routes:
            return None
        try:
            version = state.manager.find(service, None)
        except errors.KeelError:
            return False
        return version.ready and not state.shutting_down

    # Shared by the methods.

    def _version(self, name: str, version: str, info: CallInfo) -> ServedVersion:
        """The version a call names: its own field, else the version metadata, else the default."""
        if not name:
            raise errors.ProtocolError("the request names no model: its model name is empty")
        asked = info.metadata.get(VERSION_HEADER)
        headers = {} if asked is None else {VERSION_HEADER: asked}
        info.notes["model"] = name
        found = self.plane.find(name, version or None, headers)
        info.notes["version"] = found.label
        return found

    def _call_headers(self, info: CallInfo) -> dict[str, str]:
        """What the data plane reads of a call: its deadline, in milliseconds from now."""
        remaining = info.time_remaining
        if remaining is not None:
            if remaining <= 0:
                raise errors.DeadlineExceeded("the call's deadline passed before it was read")
            return {DEADLINE_HEADER: repr(remaining * 1000.0)}
        asked = info.metadata.get(DEADLINE_HEADER)
        return {} if asked is None else {DEADLINE_HEADER: asked}

    def _authorise(self, request: Any, info: CallInfo) -> str:
        """The caller's Authorization metadata, once it has the admin token."""
        if request.repository_name:
            raise errors.ProtocolError(
                f"keel serves one repository: leave repository_name empty, not "
                f"{request.repository_name!r}"
            )
        authorization = info.metadata.get("authorization", "")
        authorise(self.state.settings, authorization)
        return authorization


async def _no_streaming(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
    await context.abort(
        grpc.StatusCode.UNIMPLEMENTED,
        "keel does not serve ModelStreamInfer (the streaming extension): call ModelInfer",
    )
    yield  # an async generator, as grpcio's stream handlers are


def _describe(request: Any) -> tuple[str, dict[str, Any]]:
    """A traced call's span name and attributes (OpenTelemetry's RPC conventions)."""
    return f"{INFERENCE_SERVICE}/ModelInfer", {
        "rpc.system": "grpc",
        "rpc.service": INFERENCE_SERVICE,
        "rpc.method": "ModelInfer",
        "keel.endpoint": ENDPOINT,
        "keel.model.name": request.model_name,
    }


def _end_request_span(
    span: Any,
    info: CallInfo,
    version: ServedVersion | None,
    status: int,
    code: grpc.StatusCode,
    answered_at: float,
) -> None:
    attributes: dict[str, Any] = {
        "rpc.grpc.status_code": code.value[0],
        "keel.outcome": tracing.outcome_of(status),
    }
    if version is not None:
        attributes["keel.model.version"] = version.label
    # As REST's: an error when the server failed or shed the call, not for a client's mistake.
    tracing.end_span(span, answered_at, attributes, code.name if status >= 500 else None)
    # The access line names the trace, continued or new.
    info.notes["trace_id"] = tracing.trace_id(span)


def _log_call(
    path: str, code: grpc.StatusCode, answered: Any, seconds: float, info: CallInfo
) -> None:
    """The access-log line of one gRPC call (``log.access``)."""
    size = 0 if answered is None else len(_serialized(answered))
    notes, metadata = info.notes, info.metadata
    access_log.request_line(
        protocol="gRPC",
        method=path.rpartition("/")[2],
        path=path,
        status=code.name,
        size=size,
        seconds=seconds,
        model=notes.get("model"),
        version=notes.get("version"),
        request_id=notes.get("request_id") or metadata.get("x-request-id"),
        trace_id=notes.get("trace_id") or access_log.trace_id_of(metadata.get("traceparent")),
    )


def _serialized(message: Any) -> bytes:
    """A response as bytes; ModelInfer's codec serialises its answer itself."""
    if isinstance(message, bytes):
        return message
    serialized: bytes = message.SerializeToString()
    return serialized
