"""What the prediction log holds: one record per logged primary request, and candidate facts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

Tensors = Mapping[str, npt.NDArray[Any]]


class CandidateStatus(StrEnum):
    """What became of the candidate's side of one logged request."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    # Sampled for mirroring, but the shadow queue was full: never sent.
    DROPPED = "dropped"
    # Not sampled for mirroring; logged (sampled) so the primary's traffic is known.
    UNMIRRORED = "unmirrored"


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One primary request (all its rows) and what the candidate made of it.

    Tensors are numpy arrays, first dimension the rows; the log store encodes them
    off the request path. ``inputs`` are the model inputs the primary ran on
    (the signature's output, so the same for records and v2 requests);
    ``input_hash`` is the SHA-256 of those inputs (``input_digest``) and is kept
    even where the inputs themselves are not.
    """

    at: float  # Unix time the primary answered.
    request_id: str
    model: str
    primary_version: str
    candidate_version: str | None
    rows: int
    status: CandidateStatus
    primary_ms: float
    primary_output: Tensors
    inputs: Tensors | None = None
    input_hash: str | None = None
    candidate_ms: float | None = None
    candidate_output: Tensors | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CandidateInfo:
    """A candidate as it was started by one server: what it is and what it cost."""

    model: str
    candidate_version: str
    kind: str  # "in-process" or "remote"
    started_at: float  # Unix time
    # Resident memory the candidate added to the server when it loaded (in-process only).
    rss_bytes: int | None = None
    source: str = ""  # the registry reference or URL
    host: str = ""  # the server (hostname:pid) that ran it


def input_digest(inputs: Tensors) -> str:
    """SHA-256 over the inputs' names, dtypes, shapes and bytes, in name order."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(inputs):
        array = np.ascontiguousarray(inputs[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        if array.dtype == object:
            digest.update(repr(array.tolist()).encode())
        else:
            digest.update(array.tobytes())
    return digest.hexdigest()
