"""Loading model artifacts safely and running them: ONNX, and safetensors with a named forward."""

from keel.runtimes.forward_pass import Forward, ForwardPass
from keel.runtimes.forwards import known_forwards
from keel.runtimes.loader import load_runtime
from keel.runtimes.onnx_external import check_onnx_external_data
from keel.runtimes.runtime import Runtime, TensorSpec
from keel.runtimes.safetensors_header import (
    SafetensorsHeader,
    SafetensorsTensor,
    check_safetensors_header,
)
from keel.runtimes.sniff import sniff_format

__all__ = [
    "Forward",
    "ForwardPass",
    "Runtime",
    "SafetensorsHeader",
    "SafetensorsTensor",
    "TensorSpec",
    "check_onnx_external_data",
    "check_safetensors_header",
    "known_forwards",
    "load_runtime",
    "sniff_format",
]
