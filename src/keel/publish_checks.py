"""What ``keel.publish`` checks before it stores a version: the signature describes the model.

Two passes. The first compares the signature with the tensors the runtime
declares: every input and output by name, dtype and shape, including the
width that a probability output's ``labels`` imply. Graphs often leave
dimensions symbolic, so the second compares the arrays the model actually
returned for the golden rows: their dtypes and shapes, one row per input row,
and label outputs within their declared labels. A signature that contradicts
the model is refused with a message naming the tensor and both sides; served,
it would mislabel the drift columns or answer what the signature forbids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keel.errors import SignatureError
from keel.runtimes import Runtime, TensorSpec
from keel.signature import Output, Signature

_STRING_KINDS = frozenset({"O", "U"})


def check_signature_matches(signature: Signature, runtime: Runtime) -> None:
    """Refuse a signature whose inputs or outputs contradict the model's declared tensors."""
    problems = _input_problems(signature, runtime.inputs)
    problems += _output_problems(signature.outputs, runtime.outputs)
    if problems:
        raise SignatureError("the signature does not match the model: " + "; ".join(problems))


def check_outputs_match(
    signature: Signature, outputs: Mapping[str, np.ndarray[Any, Any]], rows: int
) -> None:
    """Refuse what the model returned for ``rows`` golden rows where it contradicts the signature.

    Catches what the graph leaves symbolic (a last dimension of ``?`` that is 3
    at run time against 5 declared labels) and label indices past the labels.
    """
    problems = []
    for output in signature.outputs:
        value = outputs.get(output.name)
        if value is None:
            problems.append(f"output '{output.name}' was not returned by the model")
            continue
        problems += _actual_problems(output, np.asarray(value), rows)
    if problems:
        raise SignatureError(
            f"the model's outputs for {rows} golden row(s) do not match the signature: "
            + "; ".join(problems)
        )


def _input_problems(signature: Signature, specs: Sequence[TensorSpec]) -> list[str]:
    model_inputs = {spec.name: spec for spec in specs}
    problems = []
    for declared in signature.inputs:
        spec = model_inputs.pop(declared.name, None)
        if spec is None:
            problems.append(
                f"input '{declared.name}' is not an input of the model "
                f"(it has {sorted(s.name for s in specs)})"
            )
            continue
        width = signature.input_width(declared.name)
        want = f"{declared.dtype}[?, {width}]"
        if not _dtype_fits(declared.dtype, spec.dtype):
            problems.append(f"input '{declared.name}' is {want} in the signature "
                            f"but {_render(spec)} in the model")  # fmt: skip
            continue
        shape_ok = len(spec.shape) == 2 and spec.shape[1] in (None, width)
        if not shape_ok:
            problems.append(
                f"input '{declared.name}' is {want} in the signature ({width} columns from its "
                f"features) but {_render(spec)} in the model"
            )
        elif spec.shape[0] is not None:
            problems.append(_fixed_batch("input", declared.name, spec))
    problems += [f"model input '{n}' is not declared in the signature" for n in model_inputs]
    return problems


def _output_problems(outputs: Sequence[Output], specs: Sequence[TensorSpec]) -> list[str]:
    model_outputs = {spec.name: spec for spec in specs}
    problems = []
    for output in outputs:
        spec = model_outputs.get(output.name)
        if spec is None:
            problems.append(
                f"output '{output.name}' is not an output of the model "
                f"(it has {sorted(model_outputs)})"
            )
            continue
        # An empty shape is what ONNX Runtime reports when the graph does not know the
        # rank; the golden rows show the real one.
        contradicts = not _dtype_fits(output.dtype, spec.dtype) or (
            bool(spec.shape) and not _shape_fits(_expected_shape(output), spec.shape)
        )
        if contradicts:
            problems.append(
                f"output '{output.name}' is declared {_declared(output)} but the model gives "
                f"{_render(spec)}"
            )
        elif spec.shape and spec.shape[0] is not None:
            problems.append(_fixed_batch("output", output.name, spec))
    return problems


def _actual_problems(output: Output, value: np.ndarray[Any, Any], rows: int) -> list[str]:
    declared = _declared(output)
    given = f"{value.dtype.name}[{', '.join(str(d) for d in value.shape)}]"
    if not _array_dtype_fits(output.dtype, value.dtype):
        return [f"output '{output.name}' is declared {declared} but the model gave {given}"]
    expected = (rows, *_expected_shape(output)[1:])
    if not _shape_fits(expected, value.shape):
        return [f"output '{output.name}' is declared {declared} but the model gave {given}"]
    if output.kind == "label" and output.labels is not None:
        return _label_problems(output, output.labels, value)
    return []


def _label_problems(
    output: Output, labels: Sequence[str], value: np.ndarray[Any, Any]
) -> list[str]:
    """Label values the declared labels cannot name: an index past them, or an unknown string."""
    flat = value.reshape(value.shape[0], -1)
    if value.dtype.kind in _STRING_KINDS:
        known = set(labels)
        unknown = [(row, v) for row, v in enumerate(flat[:, 0].tolist()) if v not in known]
        if unknown:
            row, label = unknown[0]
            return [f"output '{output.name}' gave {label!r} for golden row {row}, which is not "
                    f"one of its declared labels {list(labels)}"]  # fmt: skip
        return []
    if value.dtype.kind not in "iu":
        return []
    outside = np.flatnonzero((flat < 0) | (flat >= len(labels)))
    if outside.size:
        row = int(outside[0]) // flat.shape[1]
        index = int(flat.reshape(-1)[outside[0]])
        return [f"output '{output.name}' gave label index {index} for golden row {row}, but it "
                f"declares {len(labels)} labels (indices 0 to {len(labels) - 1})"]  # fmt: skip
    return []


def _expected_shape(output: Output) -> tuple[int | None, ...]:
    """The declared shape, with the width a probability output's labels imply filled in."""
    shape = tuple(output.shape)
    if output.kind == "probability" and output.labels is not None and len(shape) > 1:
        shape = (*shape[:-1], len(output.labels))
    return shape


def _declared(output: Output) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in output.shape)
    text = f"{output.dtype}[{dims}]"
    if output.labels is not None:
        text += f" with {len(output.labels)} labels"
        if output.kind == "probability" and len(output.shape) > 1:
            text += f" (a last dimension of {len(output.labels)})"
    return text


def _render(spec: TensorSpec) -> str:
    dtype = "string" if spec.dtype == "object" else spec.dtype
    dims = ", ".join("?" if d is None else str(d) for d in spec.shape)
    return f"{dtype}[{dims}]"


def _fixed_batch(role: str, name: str, spec: TensorSpec) -> str:
    return (
        f"{role} '{name}' has a fixed first dimension of {spec.shape[0]} in the model "
        f"({_render(spec)}), but keel batches rows: export it with a dynamic first dimension"
    )


def _dtype_fits(declared: str, model: str) -> bool:
    return model == ("object" if declared == "string" else declared)


def _array_dtype_fits(declared: str, actual: np.dtype[Any]) -> bool:
    if declared == "string":
        return actual.kind in _STRING_KINDS
    return actual == np.dtype(declared)


def _shape_fits(declared: Sequence[int | None], shape: Sequence[int | None]) -> bool:
    """Same rank, and every dimension both sides fix is the same size."""
    if len(declared) != len(shape):
        return False
    return all(a is None or b is None or a == b for a, b in zip(declared, shape, strict=True))
