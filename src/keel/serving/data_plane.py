"""Every inference, whatever its protocol, takes one path: version, checks, batcher, answer.

The protocols (the records API and the Open Inference Protocol today, gRPC next)
differ only in how they read a request and write an answer: each is a ``Codec``.
Between the two, every request takes the same steps in ``DataPlane.infer``: the
version must be ready (refused before anything is parsed), the deadline is read,
the codec decodes the request and checks it against the signature, the version's
batcher runs it (and refuses a NaN or infinite output), the shadow is offered the
answer, and the codec encodes the outputs. A rule added here holds on every
protocol at once, and a caller with no HTTP at all (a test, the gRPC edge) gets
the same verdicts. Errors are raised as keel's exceptions; the edge maps them to
its status codes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, TypeVar

from keel import tracing
from keel.errors import ProtocolError
from keel.serving.batcher import Tensors
from keel.serving.calls import DEADLINE_HEADER, VERSION_HEADER, Call
from keel.serving.model_manager import ModelManager
from keel.serving.served_version import ServedVersion

AnswerT_co = TypeVar("AnswerT_co", covariant=True)


class Decoded(NamedTuple):
    """A request read and checked by its codec: the model's inputs, and what encoding needs."""

    inputs: Tensors
    # The client's id for the request, echoed in the answer and the shadow's log.
    request_id: str | None
    # Whatever else of the request the codec's encoder reads (v2: the outputs asked for).
    detail: Any = None


class Codec(Protocol[AnswerT_co]):
    """How one protocol reads a request into model inputs and writes the outputs back."""

    def decode(self, version: ServedVersion, call: Call) -> Decoded:
        """The request's inputs, checked against ``version``'s signature (KeelError if not)."""
        ...

    def encode(self, version: ServedVersion, request: Decoded, outputs: Tensors) -> AnswerT_co:
        """The answer to ``request`` from the outputs its rows got."""
        ...


class Mirror(Protocol):
    """Where an answered request is offered for shadowing (``keel.shadow`` provides one)."""

    def offer(self, primary: ServedVersion, request: Decoded, outputs: Tensors, call: Call) -> None:
        """Takes the answered request or drops it, at once: it never waits or raises."""
        ...


class DataPlane:
    """Runs inference requests for every edge: resolve, decode, batch, mirror, encode."""

    def __init__(
        self,
        manager: ModelManager,
        default_deadline_ms: float,
        mirrors: Mapping[str, Mirror] | None = None,
    ) -> None:
        self.manager = manager
        self.default_deadline_s = default_deadline_ms / 1000.0
        # By model name; read on every request, so a mirror started later is seen.
        self.mirrors: Mapping[str, Mirror] = {} if mirrors is None else mirrors

    def find(
        self, name: str, path_version: str | None, headers: Mapping[str, str]
    ) -> ServedVersion:
        """The version asked for: the path's, else the version header's, else the default."""
        return self.manager.find(name, path_version or headers.get(VERSION_HEADER))

    def deadline_s(self, headers: Mapping[str, str]) -> float:
        """Seconds from now by which the answer must be ready: the header's, else the default.

        Relative: the batcher turns it into its loop's time (``Batcher.deadline_in``), where
        ``asyncio.get_running_loop()`` would cost every request a system call (getpid).
        """
        raw = headers.get(DEADLINE_HEADER)
        if raw is None:
            return self.default_deadline_s
        try:
            milliseconds = float(raw)
        except ValueError:
            raise ProtocolError(f"{DEADLINE_HEADER} {raw!r} is not a number") from None
        if not milliseconds > 0:
            raise ProtocolError(f"{DEADLINE_HEADER} must be a positive number of milliseconds")
        return milliseconds / 1000.0

    async def infer(
        self, version: ServedVersion, codec: Codec[AnswerT_co], call: Call
    ) -> AnswerT_co:
        """``codec``'s answer to ``call`` from ``version``; raises KeelError when it is refused."""
        batcher = version.require_batcher()  # NotReady before any parsing
        deadline = batcher.deadline_in(self.deadline_s(call.headers))
        span = call.span
        if span is None:
            request = codec.decode(version, call)
            decoded_at = time.perf_counter()
        else:
            decoding_at = time.perf_counter()
            request = codec.decode(version, call)
            decoded_at = time.perf_counter()
            # The signature is checked as the body is decoded (the records API builds its
            # arrays as it validates; the v2 fast path checks as it parses): one step.
            tracing.child_span(span, "keel.decode", decoding_at, decoded_at)
            first = next(iter(request.inputs.values()), None)
            if first is not None and first.ndim:
                span.set_attribute("keel.rows", int(first.shape[0]))
        outputs = await batcher.submit(request.inputs, deadline, span)
        ran_at = time.perf_counter()
        mirrors = self.mirrors
        if mirrors:
            mirror = mirrors.get(version.name)
            if mirror is not None:
                # Offered once the outputs are known; the mirror's queue takes it or drops it.
                mirror.offer(version, request, outputs, call)
        answer = codec.encode(version, request, outputs)
        encoded_at = time.perf_counter()
        if span is not None:
            tracing.child_span(span, "keel.encode", ran_at, encoded_at)
        # The statistics extension's compute_input (arrival to checked inputs: the body
        # read, decoded and checked) and compute_output (outputs to the encoded answer).
        version.metrics.computed_request(decoded_at - call.received_at, encoded_at - ran_at)
        return answer
