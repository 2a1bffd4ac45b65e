"""Load a model file into a Runtime, refusing anything unsafe before it is deserialised."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from keel.errors import RuntimeFailure
from keel.runtimes.forwards import known_forwards, resolve_forward
from keel.runtimes.onnx_external import check_onnx_external_data
from keel.runtimes.onnx_layout import LayoutCache, shared_layout
from keel.runtimes.onnx_runtime import OnnxRuntime
from keel.runtimes.runtime import Runtime
from keel.runtimes.safetensors_header import check_safetensors_header
from keel.runtimes.safetensors_runtime import SafetensorsRuntime
from keel.runtimes.sniff import ONNX, sniff_format
from keel.settings import RuntimeSettings

log = logging.getLogger("keel.runtimes")


def load_runtime(
    path: str | os.PathLike[str],
    *,
    settings: RuntimeSettings | None = None,
    forward: str | None = None,
    forward_config: Mapping[str, object] | None = None,
    layout: LayoutCache | None = None,
) -> Runtime:
    """Sniff, check and load the model at ``path``.

    ``forward`` names the forward implementation safetensors weights run through (see
    ``keel.runtimes.forwards``) and ``forward_config`` configures it; ONNX models carry
    their own graph and take neither. With ``layout``, an ONNX model as large as
    ``settings.shared_layout_min_bytes`` runs from its shared layout (``onnx_layout``).
    """
    settings = settings or RuntimeSettings()
    path = Path(path)
    # Sniffing comes first so a pickle is refused before any parser sees the file.
    model_format = sniff_format(path)
    if model_format == ONNX:
        if forward is not None or forward_config:
            raise RuntimeFailure(
                f"{path} is an ONNX model, which carries its own graph; do not name a "
                f"forward implementation (got forward={forward!r}, "
                f"forward_config={forward_config!r})"
            )
        check_onnx_external_data(path)
        if layout is None or layout.model_bytes < settings.shared_layout_min_bytes:
            return OnnxRuntime(path, settings)
        try:
            serving = shared_layout(path, layout, settings)
        except (OSError, RuntimeFailure) as exc:
            log.warning(
                "cannot keep the shared layout of %s in %s (%s): it runs as published, with "
                "a copy of its weights in every process (cache_dir must be a writable folder)",
                path, layout.folder, exc,
            )  # fmt: skip
            return OnnxRuntime(path, settings)
        check_onnx_external_data(serving)
        return OnnxRuntime(serving, settings, graph=path)
    if forward is None:
        raise RuntimeFailure(
            f"{path} holds safetensors weights, which need a forward implementation: name one "
            f"with --forward NAME (forward=NAME in Python); known: {', '.join(known_forwards())}"
        )
    header = check_safetensors_header(path)
    implementation = resolve_forward(forward)
    return SafetensorsRuntime(path, header, implementation, forward_config or {})
