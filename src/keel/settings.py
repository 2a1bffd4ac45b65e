"""The one settings object of keel, read at the edge (CLI, app factory) and passed down."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeSettings(BaseModel):
    """How model runtimes are configured when a model is loaded."""

    intra_op_threads: int = Field(
        default=1,
        ge=0,
        description=(
            "Threads ONNX Runtime may use inside one operator. keel runs several batches "
            "in flight at once, so one thread per call avoids oversubscribing the cores; "
            "raise it for large models served one batch at a time (0 = one per core)."
        ),
    )
    inter_op_threads: int = Field(
        default=1,
        ge=0,
        description="Threads ONNX Runtime may use to run independent operators in parallel.",
    )
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        default="all",
        description="ONNX Runtime graph optimisation level applied when a session is created.",
    )


class Settings(BaseSettings):
    """Everything keel can be told; environment variables use the ``KEEL_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="KEEL_", env_nested_delimiter="__")

    registry: str = Field(
        default="registry",
        description="Registry location: a folder path or an fsspec URL (s3://bucket/prefix).",
    )
    cache_dir: str = Field(
        default="",
        description=(
            "Local folder where artifacts from a remote registry are copied before they are "
            "verified and loaded (default: a 'keel' folder in the user's cache)."
        ),
    )
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
