"""The registry of forward implementations, which ship with code and never with a model.

A safetensors file names its forward pass by a string; that string is only ever a key
into this registry. Modules named by model metadata are never imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType

from keel.errors import RuntimeFailure
from keel.runtimes.forward_pass import Forward
from keel.runtimes.numpy_mlp import NUMPY_MLP
from keel.runtimes.torch_mlp import TORCH_MLP

ENTRY_POINT_GROUP = "keel.forwards"
BUILTIN_FORWARDS: Mapping[str, Forward] = MappingProxyType(
    {"numpy-mlp": NUMPY_MLP, "torch-mlp": TORCH_MLP}
)


def known_forwards() -> tuple[str, ...]:
    """Names of every forward implementation available: built in and installed."""
    installed = {entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)}
    return tuple(sorted(installed | set(BUILTIN_FORWARDS)))


def resolve_forward(name: str) -> Forward:
    """Return the forward implementation called ``name``; RuntimeFailure lists the known ones."""
    # Built-ins win: an installed package must not quietly replace the forward pass a
    # model was published and verified with.
    builtin = BUILTIN_FORWARDS.get(name)
    if builtin is not None:
        return builtin
    candidates = list(entry_points(group=ENTRY_POINT_GROUP, name=name))
    if not candidates:
        raise RuntimeFailure(
            f"unknown forward implementation {name!r}; known: {', '.join(known_forwards())}"
        )
    if len(candidates) > 1:
        sources = ", ".join(sorted(entry.value for entry in candidates))
        raise RuntimeFailure(
            f"forward implementation {name!r} is installed more than once ({sources}); "
            "uninstall all but one"
        )
    return _load(candidates[0])


def _load(entry: EntryPoint) -> Forward:
    try:
        loaded: object = entry.load()
    except (ImportError, AttributeError) as exc:
        raise RuntimeFailure(
            f"forward implementation {entry.name!r} ({entry.value}) could not be imported: {exc}"
        ) from exc
    # A class is accepted in place of an instance, for packages that export the type.
    forward = loaded() if isinstance(loaded, type) else loaded
    if not isinstance(forward, Forward):
        raise RuntimeFailure(
            f"forward implementation {entry.name!r} ({entry.value}) has no build(weights, "
            "config) method"
        )
    return forward
