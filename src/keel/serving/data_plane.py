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

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar

from keel.serving.batcher import Tensors
from keel.serving.calls import Call
from keel.serving.context import ServerState, deadline_s_of, find_version
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


class DataPlane:
    """Runs inference requests for every edge: resolve, decode, batch, mirror, encode."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        # The version asked for: the path's, else the version header's, else the default.
        self.find: Callable[[str, str | None, Mapping[str, str]], ServedVersion] = (
            functools.partial(find_version, state)
        )

    async def infer(
        self, version: ServedVersion, codec: Codec[AnswerT_co], call: Call
    ) -> AnswerT_co:
        """``codec``'s answer to ``call`` from ``version``; raises KeelError when it is refused."""
        batcher = version.require_batcher()  # NotReady before any parsing
        deadline = batcher.deadline_in(deadline_s_of(call.headers, self.state))
        request = codec.decode(version, call)
        outputs = await batcher.submit(request.inputs, deadline)
        mirrors = self.state.shadowing.mirrors
        if mirrors:
            mirror = mirrors.get(version.name)
            if mirror is not None:
                # Offered once the outputs are known; the mirror's queue takes it or drops it.
                mirror.offer(version, request.inputs, outputs, call.received_at, request.request_id)
        return codec.encode(version, request, outputs)
