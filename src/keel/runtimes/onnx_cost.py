"""Whether an ONNX graph's cost is bounded by its input shapes, or input values can raise it.

The server calls a model on its event loop only when warm-up was fast *and* no
input can make a run slower than the warm-up rows did (``Runtime.value_dependent_cost``).
Warm-up rows are synthetic, so a graph qualifies only if the amount of work of every
node follows from tensor shapes and from constants:

* Control flow (``Loop``, ``Scan``, ``If``) runs as much of its body as a value says:
  a ``Loop`` whose trip count comes from a feature ran 9 s on one row and 30 µs on
  the warm-up rows.
* Some ops size their output from values (``NonZero``, ``Unique``,
  ``NonMaxSuppression``): warm-up values need not come near the worst case.
* Some ops read their output size from an input tensor (``Range``, ``Expand``,
  ``Tile``, ``ConstantOfShape``, ...). That is harmless when the size comes from
  constants or from ``Shape`` (exporters emit this pattern everywhere) and unbounded
  when it comes from request values, so what each value is derived from is followed
  through the graph.
* String ops cost what the strings' lengths say.
* Ops of domains other than ONNX's own and ONNX Runtime's contrib ops are code
  keel cannot see into; of the contrib ops, the generation loops are control flow.

Tree ensembles count as bounded: a row costs at most the sum of the trees' depths,
a constant of the model, and the run-time bound on inline runs (``Batcher``) covers
a forest whose deepest paths the warm-up rows missed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import onnx

_CONTROL_FLOW = frozenset({"Loop", "Scan", "If", "SequenceMap"})
_VALUE_SIZED = frozenset({"NonZero", "Unique", "NonMaxSuppression"})
_STRING_OPS = frozenset(
    {
        "StringNormalizer",
        "StringSplit",
        "StringConcat",
        "RegexFullMatch",
        "TfIdfVectorizer",
        "Tokenizer",
    }
)
# Position of the inputs that choose an op's output size, per op.
_SIZE_INPUTS: Mapping[str, tuple[int, ...]] = {
    "Range": (0, 1, 2),
    "ConstantOfShape": (0,),
    "Expand": (1,),
    "Tile": (1,),
    "OneHot": (1,),
    "Pad": (1,),
    "CenterCropPad": (1,),
    "Resize": (2, 3),
    "Upsample": (1,),
    "Col2Im": (1, 2),
}
# Shape and Size read a tensor's shape, never its values.
_SHAPE_READERS = frozenset({"Shape", "Size"})
_ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
_CONTRIB_DOMAIN = "com.microsoft"
# ONNX Runtime's contrib ops are fused forms of standard ops, except these decoding loops.
_CONTRIB_LOOPS = frozenset({"BeamSearch", "GreedySearch", "Sampling", "WhisperBeamSearch"})


def value_dependent_cost(model: onnx.ModelProto) -> str | None:
    """Say why a run of ``model`` may cost more than its input shapes say; None if it cannot."""
    local_functions = {(function.domain, function.name) for function in model.functions}
    known = {initializer.name for initializer in model.graph.initializer}
    known.update(sparse.values.name for sparse in model.graph.sparse_initializer)
    reason = _nodes_reason(model.graph.node, known, local_functions)
    if reason is not None:
        return reason
    for function in model.functions:
        # A function's inputs are whatever its caller passes: taken as request values.
        reason = _nodes_reason(function.node, set(), local_functions)
        if reason is not None:
            return f"{reason} (in function '{function.name}')"
    return None


def _nodes_reason(
    nodes: Iterable[onnx.NodeProto],
    known: set[str],
    local_functions: set[tuple[str, str]],
) -> str | None:
    """The first node whose cost input values can raise; ``known`` grows by what shapes decide.

    ``known`` holds the tensors whose values follow from constants and shapes alone.
    ONNX requires nodes in topological order, so one pass sees every producer first.
    """
    for node in nodes:
        op = node.op_type
        what = f"{op} node '{node.name}'" if node.name else f"{op} node"
        if (node.domain, op) in local_functions:
            pass  # its body is checked on its own
        elif node.domain == _CONTRIB_DOMAIN:
            if op in _CONTRIB_LOOPS:
                return f"its graph has a {what}, which runs as many steps as its inputs say"
        elif node.domain not in _ONNX_DOMAINS:
            return f"its graph has a {what} of domain '{node.domain}', whose cost keel cannot see"
        if op in _CONTROL_FLOW or any(_is_graph(attribute) for attribute in node.attribute):
            return f"its graph has a {what}, which runs as much of its body as input values say"
        if op in _VALUE_SIZED:
            return f"its graph has a {what}, whose output size depends on input values"
        if op in _STRING_OPS:
            return f"its graph has a {what}, whose cost follows the strings' lengths"
        for position in _SIZE_INPUTS.get(op, ()):
            size = node.input[position] if position < len(node.input) else ""
            if size and size not in known:
                return (
                    f"its graph has a {what} whose output size comes from request values ('{size}')"
                )
        if _decided_by_shapes(node, known):
            known.update(name for name in node.output if name)
    return None


def _decided_by_shapes(node: onnx.NodeProto, known: set[str]) -> bool:
    """Whether the node's output values follow from constants and shapes alone."""
    if node.op_type == "Constant" or node.op_type in _SHAPE_READERS:
        return True
    if node.op_type.startswith("Random"):
        return False
    return all(name in known for name in node.input if name)


def _is_graph(attribute: onnx.AttributeProto) -> bool:
    return attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
