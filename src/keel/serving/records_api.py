"""The JSON records API: ``{"instances": [{feature: value}, ...]}`` validated by the signature.

Served at ``/v1/models/{name}[/versions/{version}]/predict`` by ``inference_front``,
through the data plane (``RECORDS`` is its codec).
Each answer row holds every declared output by name. A label output whose
signature declares its ``labels`` answers the label's name, and its index
under ``<output>_index`` (unless the signature declares an output of that name,
which then keeps the key); the v2 API answers the tensor, indices and all.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import orjson

from keel.errors import FieldError, InvalidRequest, ProtocolError, RuntimeFailure
from keel.serving.batcher import Tensors
from keel.serving.calls import Call, Reply
from keel.serving.data_plane import Decoded
from keel.serving.served_version import ServedVersion
from keel.signature import Signature, freshness_of, split_computed_at, to_arrays


class RecordsCodec:
    """The records API as the data plane's codec: records in, one answer row per record out."""

    def decode(self, version: ServedVersion, call: Call) -> Decoded:
        """The records as model inputs, validated with the signature."""
        instances, request_id = _instances(call.body)
        stale = _freshness_errors(version, instances)
        try:
            arrays = to_arrays(instances, version.metadata.signature)
        except InvalidRequest as exc:
            raise InvalidRequest(stale + exc.errors) from None
        if stale:
            raise InvalidRequest(stale)
        return Decoded(arrays, request_id)

    def encode(self, version: ServedVersion, request: Decoded, outputs: Tensors) -> Reply:
        """Every declared output by name, a row per record, labels by name."""
        response: dict[str, Any] = {
            "model_name": version.name,
            "model_version": version.label,
            "predictions": _predictions(
                version.derived.get("records_answer") or _remember_plan(version), outputs
            ),
        }
        if request.request_id is not None:
            response["id"] = request.request_id
        return Reply(200, orjson.dumps(response), headers=[version.label_header])


RECORDS = RecordsCodec()


def _freshness_errors(version: ServedVersion, instances: list[Any]) -> list[FieldError]:
    """Take each record's ``@computed_at`` out, observe the ages, and return what is refused."""
    freshness = freshness_of(version.metadata.signature)
    if freshness is None:
        # A record that carries the key anyway is refused by the validator as unknown_field.
        return []
    result = freshness.check(split_computed_at(instances), time.time())
    version.metrics.freshness(result)
    return result.errors


_TOP_LEVEL = frozenset(("instances", "id"))


def _instances(body: bytes) -> tuple[list[Any], str | None]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        payload = _lenient_json(body, exc)
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidRequest(
            [FieldError(None, "instances", "required", 'the body must be {"instances": [records]}')]
        )
    if not _TOP_LEVEL.issuperset(payload):
        unknown = sorted(set(payload) - _TOP_LEVEL)
        raise InvalidRequest(
            [
                FieldError(None, k, "unknown_field", f"unknown top-level field '{k}'")
                for k in unknown
            ]
        )
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidRequest(
            [
                FieldError(
                    None,
                    "instances",
                    "not_a_record",
                    "instances must be a non-empty list of records",
                )
            ]
        )
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest([FieldError(None, "id", "type", "id must be a string")])
    return instances, request_id


def _lenient_json(body: bytes, error: orjson.JSONDecodeError) -> Any:
    """Parse the NaN and Infinity literals strict JSON forbids, so the signature names the field.

    Python's json writes them by default, so clients do send them; refusing the
    whole body would hide which feature was NaN. Only reached when orjson has
    already refused the body, so the hot path keeps orjson's speed. Everything
    Python's parser can raise is a refusal of the body (400), never a 500.
    """
    try:
        payload = json.loads(body)
    except RecursionError:
        raise ProtocolError("the body is not valid JSON: it is nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProtocolError(f"the body is not valid JSON: {error}") from None
    except ValueError:
        # The only other ValueError: an integer longer than Python converts (CVE-2020-10735).
        raise ProtocolError(
            f"the body is not valid JSON: a number has more than {sys.get_int_max_str_digits()} "
            "digits"
        ) from None
    try:
        orjson.dumps(payload)
    except orjson.JSONEncodeError as exc:
        # orjson, which writes the answers, refuses what Python's parser lets through:
        # lone surrogates (\ud800), which UTF-8 cannot hold, and nesting past 255 levels.
        raise ProtocolError(f"the body is not valid JSON: {exc}") from None
    return payload


class _Column(NamedTuple):
    """How one declared output is answered: as it is, or as label names (and indices)."""

    name: str
    # Each declared label by its index; None for an output answered as it is.
    labels: Mapping[int, str] | None
    # Where the index goes beside the names; None when a declared output has that name.
    index_key: str | None


def _plan(signature: Signature) -> tuple[_Column, ...]:
    """The answer's columns, decided once per version rather than on every request."""
    names = {o.name for o in signature.outputs}
    return tuple(
        _Column(o.name, None, None)
        if o.labels is None or o.kind != "label"
        else _Column(
            o.name,
            dict(enumerate(o.labels)),
            None if f"{o.name}_index" in names else f"{o.name}_index",
        )
        for o in signature.outputs
    )


def _remember_plan(version: ServedVersion) -> tuple[_Column, ...]:
    plan = version.derived["records_answer"] = _plan(version.metadata.signature)
    return plan


def _predictions(plan: tuple[_Column, ...], outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One answer row per input row: every declared output, label indices as their names."""
    columns: dict[str, list[Any]] = {}
    for name, labels, index_key in plan:
        values = outputs[name]
        indices: list[Any] = values.tolist()
        if labels is None or values.dtype.kind not in "iu":
            columns[name] = indices
            continue
        try:
            # One lookup a row: an index past the labels (or below 0) is not a key.
            columns[name] = (
                [labels[i] for i in indices] if values.ndim == 1 else _shaped(labels, values)
            )
        except KeyError as exc:
            raise RuntimeFailure(
                f"output '{name}' answered label index {exc.args[0]}, but the signature "
                f"declares {len(labels)} labels (indices 0 to {len(labels) - 1})"
            ) from None
        if index_key is not None:
            columns[index_key] = indices
    # The batcher checked that every output has one row per input row.
    if len(indices) == 1:
        return [{key: column[0] for key, column in columns.items()}]
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _shaped(labels: Mapping[int, str], values: np.ndarray) -> list[Any]:
    """Label names in the shape of an output with more than one index a row."""
    names = [labels[i] for i in values.ravel().tolist()]
    shaped: list[Any] = np.array(names, dtype=object).reshape(values.shape).tolist()
    return shaped
