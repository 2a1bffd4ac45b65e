"""keel: run machine-learning models in production the boring, reliable way.

The public API; everything not re-exported here may change between releases.
"""

from keel.errors import (
    IntegrityError,
    InvalidRequest,
    KeelError,
    ModelNotFound,
    SignatureError,
    UnsafeArtifact,
)
from keel.loading import LoadedModel, load_version
from keel.publishing import publish
from keel.registry import ModelMetadata, Registry
from keel.runtimes import Runtime, load_runtime
from keel.settings import Settings
from keel.signature import Feature, ModelInput, Output, Signature, to_arrays
from keel.verification import VerificationReport, verify

__version__ = "0.1.0"

__all__ = [
    "Feature",
    "IntegrityError",
    "InvalidRequest",
    "KeelError",
    "LoadedModel",
    "ModelInput",
    "ModelMetadata",
    "ModelNotFound",
    "Output",
    "Registry",
    "Runtime",
    "Settings",
    "Signature",
    "SignatureError",
    "UnsafeArtifact",
    "VerificationReport",
    "__version__",
    "load_runtime",
    "load_version",
    "publish",
    "to_arrays",
    "verify",
]
