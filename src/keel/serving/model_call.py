"""One request's run through its model version, the same for every API that serves it.

The records API and the Open Inference Protocol differ only in how they read a
request and write an answer; between the two, every request takes this path:
the version's batcher (which refuses a NaN or infinite output, for every API at
once), then ``accepted_outputs``: the shadow mirror. A rule added here holds on
every API at once.
"""

from __future__ import annotations

from keel.serving.batcher import Tensors
from keel.serving.context import ServerState
from keel.serving.served_version import ServedVersion


def accepted_outputs(
    state: ServerState,
    version: ServedVersion,
    inputs: Tensors,
    outputs: Tensors,
    received_at: float,
    request_id: str | None,
) -> Tensors:
    """The outputs ``version``'s batcher gave for ``inputs``, offered to the shadow.

    Every API calls it on what ``await batcher.submit(...)`` returned, with the
    batcher the handler took (``require_batcher``) before it parsed anything, so
    that a version not ready refuses at once. A plain function, not a coroutine
    around the submit: one more coroutine a request costs more than the check.
    """
    mirrors = state.shadowing.mirrors
    if mirrors:
        mirror = mirrors.get(version.name)
        if mirror is not None:
            mirror.offer(version, inputs, outputs, received_at, request_id)
    return outputs
