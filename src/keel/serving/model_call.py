"""One request's run through its model version, the same for every API that serves it.

The records API and the Open Inference Protocol differ only in how they read a
request and write an answer; between the two, every request takes this path:
the version's batcher, then ``accepted_outputs``: the check that the outputs
can be a prediction at all, and the shadow mirror. A rule added here holds on
every API at once.
"""

from __future__ import annotations

import math

import numpy as np

from keel.errors import NonFiniteOutput
from keel.serving.batcher import Tensors
from keel.serving.context import ServerState
from keel.serving.served_version import ServedVersion

# Up to this many elements an output is summed in Python, which costs about 0.2 us for
# a row of probabilities against 1.5 us for numpy's isfinite and all (measured).
_SUMMED_IN_PYTHON = 64


def accepted_outputs(
    state: ServerState,
    version: ServedVersion,
    inputs: Tensors,
    outputs: Tensors,
    received_at: float,
    request_id: str | None,
) -> Tensors:
    """The outputs ``version``'s batcher gave for ``inputs``, checked finite, offered to the shadow.

    Every API calls it on what ``await batcher.submit(...)`` returned, with the
    batcher the handler took (``require_batcher``) before it parsed anything, so
    that a version not ready refuses at once. A plain function, not a coroutine
    around the submit: one more coroutine a request costs more than the check.
    """
    refuse_non_finite(version.metadata.ref, outputs)
    mirror = state.shadowing.mirrors.get(version.name)
    if mirror is not None:
        mirror.offer(version, inputs, outputs, received_at, request_id)
    return outputs


def refuse_non_finite(model: str, outputs: Tensors) -> None:
    """Raise NonFiniteOutput if a float output of ``model`` holds NaN or an infinity.

    No prediction may carry one: JSON has no spelling for it (orjson would write
    ``null``, a silent gap in a client's data), and a binary answer would hand the
    client a number no output kind (probability, score, regression) can mean. It
    is the model's failure, not the client's, so it is answered as one (500).
    """
    for name, array in outputs.items():
        if array.dtype.kind != "f":
            continue
        # A NaN or an infinity makes the sum non-finite; so may finite float64 values
        # whose sum overflows, which the exact check then clears.
        if array.size <= _SUMMED_IN_PYTHON and math.isfinite(sum(array.ravel().tolist())):
            continue
        if not np.isfinite(array).all():
            raise NonFiniteOutput(
                f"{model} returned NaN or infinity in output {name!r}; the prediction is refused"
            )
