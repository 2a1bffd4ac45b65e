"""The one settings object of keel, read at the edge (CLI, app factory) and passed down.

What can be set, with defaults and descriptions; ``keel.configuration`` reads it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeSettings(BaseModel):
    """How model runtimes are configured when a model is loaded."""

    model_config = ConfigDict(extra="forbid")

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
    shared_layout_min_bytes: int = Field(
        default=1 << 20,
        ge=0,
        description=(
            "ONNX models at least this large (bytes, their files together) are served from a "
            "layout derived once into the cache (cache_dir), whose weights every process maps "
            "read-only, so that processes serving one model hold one copy of its weights; "
            "smaller ones are loaded as published. 0 derives a layout for every ONNX model."
        ),
    )


class BatchingSettings(BaseModel):
    """How requests to one model version are merged into runtime calls."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(
        default=64, ge=1, description="Most rows in one runtime call; 1 turns batching off."
    )
    max_queue_delay_ms: float = Field(
        default=2.0,
        ge=0,
        description=(
            "Longest a request waits for company while another batch is running. An idle "
            "model runs a lone request at once: it never waits for company it will not get."
        ),
    )
    max_queue_size: int = Field(
        default=2048,
        ge=1,
        description="Most rows waiting per model version; past it requests get 503 at once.",
    )
    max_batches_in_flight: int = Field(
        default=2, ge=1, description="Runtime calls of one model version running at the same time."
    )
    inline_below_us: float = Field(
        default=500.0,
        ge=0,
        description=(
            "A model whose full batch ran faster than this at warm-up, and whose cost its "
            "input shapes bound (no loops, no value-sized outputs, no string inputs), is "
            "called on the event loop: handing it to a worker thread would cost more than "
            "the call. One run over 4 times this (at least 1 ms) of the loop's CPU time "
            "moves the version to its threads for good. 0 = always use the threads."
        ),
    )


# Past this, more processes only add memory: no machine keel targets has the cores.
MAX_WORKERS = 256


class ServerSettings(BaseModel):
    """The HTTP server: address, limits, deadlines and shutdown."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port to listen on (1-65535).")
    grpc_port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description=(
            "Port of the Open Inference Protocol's gRPC service and the grpc.health.v1 "
            "health service, on the same host (0 = no gRPC)."
        ),
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body; larger ones get 413 before they are read.",
    )
    default_deadline_ms: float = Field(
        default=10_000,
        gt=0,
        description="Deadline of a request that sends no X-Keel-Deadline-Ms header (504 past it).",
    )
    keep_alive_s: float = Field(
        default=75.0,
        gt=0,
        description=(
            "An idle keep-alive connection closes after this long. Keep it above the "
            "idle timeout of any load balancer or proxy in front (60 s on an AWS ALB, "
            "nginx's upstream keepalive), or it may reuse a connection keel is closing."
        ),
    )
    read_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "A connection that falls silent part way through sending a request closes "
            "after this long, so slow or stalled clients cannot hold connections open."
        ),
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description=(
            "Most bytes of a request line and headers (and of chunk-size lines and "
            "trailers), counted as they arrive, so a line that never ends is refused (431) "
            "at this size rather than buffered."
        ),
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "The request line and headers must arrive within this long of their first "
            "byte; a client trickling them slower gets 408 and is closed."
        ),
    )
    body_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Grace for a request body: after the headers, the body may take this long plus "
            "its size at body_min_bytes_per_s; a slower sender gets 408 and is closed."
        ),
    )
    body_min_bytes_per_s: int = Field(
        default=16 * 1024,
        ge=1,
        description="Slowest body a client may send, in bytes a second, past body_timeout_s.",
    )
    max_connections: int = Field(
        default=0,
        ge=0,
        description=(
            "Open client connections served in full; more get 503 on every route but the "
            "probes and the admin API (/v2/health/*, /v2/repository/*, /metrics), for "
            "probe_connections more, and past those are refused at once. 0 = from the "
            "open-file limit (raised to its hard limit at start), less what models and "
            "logs need."
        ),
    )
    probe_connections: int = Field(
        default=32,
        ge=1,
        description="Connections kept past max_connections for the probes and the admin API.",
    )
    grace_period_s: float = Field(
        default=20.0,
        ge=0,
        description="On SIGTERM, how long in-flight requests may take to finish before exit.",
    )
    watch_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="How often aliases are re-read from the registry for hot swap (0 = never).",
    )
    workers: int | Literal["auto"] = Field(
        default=1,
        description=(
            "Worker processes answering on the one port, each with its own event loop and "
            "core; a supervisor starts them, restarts one that dies, and passes a stop signal "
            "on. Their ONNX weights are mapped from one shared layout, so N workers hold one "
            "copy (runtime.shared_layout_min_bytes). 'auto' = the CPUs this container may use "
            "(its CPU quota and affinity). 1 = one process, no supervisor."
        ),
    )
    inference_threads: int = Field(
        default=0,
        ge=0,
        description=(
            "Threads that load and verify model versions (0 = one per core). Model calls "
            "run on each version's own threads, batching.max_batches_in_flight of them."
        ),
    )
    switch_interval_ms: float = Field(
        default=0.5,
        gt=0,
        description=(
            "Longest the event loop waits for the interpreter lock while another thread "
            "(the prediction-log writer, a model's batch assembly) runs Python code: "
            "sys.setswitchinterval. Python's 5 ms default shows in the p99 of a small "
            "model's requests whenever such a thread is busy."
        ),
    )
    strict_env: bool = Field(
        default=False,
        description=(
            "Refuse a version whose critical libraries (or Python minor version) differ "
            "from its training environment, even if its golden check passes."
        ),
    )

    @field_validator("grpc_port")
    @classmethod
    def _grpc_port_of_its_own(cls, value: int, info: ValidationInfo) -> int:
        if value and value == info.data.get("port"):
            raise ValueError(
                f"{value} is the HTTP port (server.port) too: give gRPC a port of its own "
                "(--grpc-port, KEEL_SERVER__GRPC_PORT), or 0 for no gRPC"
            )
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> int | str:
        """A count or 'auto', said in one sentence however it was mistyped."""
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS:
            return value
        raise ValueError(
            f"must be 'auto' or a whole number of processes from 1 to {MAX_WORKERS}, not {value!r}"
        )


class DriftThresholds(BaseModel):
    """When a column's status turns to warn (1) or alert (2), and when flags are raised."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    psi_warn: float = Field(
        default=0.1, gt=0, description="PSI above the sampling noise that makes a warning."
    )
    psi_alert: float = Field(
        default=0.25, gt=0, description="PSI above the sampling noise that makes an alert."
    )
    p_value: float = Field(
        default=0.01,
        gt=0,
        le=1,
        description=(
            "A shift also needs its second test (KS or chi-square) below this p-value: "
            "a large PSI from a few rows is not evidence of drift."
        ),
    )
    null_spike_increase: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Smallest rise of a null rate over the reference's that counts as a spike.",
    )
    null_spike_z: float = Field(
        default=3.0,
        ge=0,
        description="A null-rate rise must also exceed this many standard errors.",
    )
    collapse_std_ratio: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Predictions whose std falls below this fraction of the reference's collapsed.",
    )
    collapse_share: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="Predictions with more than this share in one reference bin collapsed.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> DriftThresholds:
        if self.psi_alert < self.psi_warn:
            raise ValueError(f"psi_alert {self.psi_alert} is below psi_warn {self.psi_warn}")
        return self


class DriftSettings(BaseModel):
    """Drift windows: how many rows they hold and when they may judge."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(
        default=True,
        description=(
            "Keep drift windows (drift, null-rate and collapse signals). Off saves their "
            "cost, measured in docs/benchmarks.md; the request counters stay on."
        ),
    )
    window_rows: int = Field(
        default=5000,
        ge=1,
        description=(
            "Rows a window covers: the last window_rows rows, less the part of the "
            "oldest block already forgotten (between window_rows - block_rows and window_rows)."
        ),
    )
    block_rows: int = Field(
        default=500,
        ge=1,
        description="Rows per block; old rows leave the window a block at a time.",
    )
    # bench/drift_false_alarms.py: with bias-corrected, significance-gated PSI, no feature
    # alerted in 1000 bootstrap windows of 500 held-out breast-cancer rows (seed 0); in 300
    # windows of 200 rows 1.3% alerted, of 100 rows 8%: below a few hundred rows PSI's
    # noise outgrows the thresholds.
    min_rows: int = Field(
        default=500,
        ge=1,
        description=(
            "Rows a window needs before drift and null spikes are judged; a column's "
            "distribution tests also need this many non-null values."
        ),
    )
    max_age_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Blocks whose newest row is older than this leave the window (0 = never). "
            "The recent predictions checked for collapse are the latest whatever their age."
        ),
    )
    collapse_rows: int = Field(
        default=200,
        ge=1,
        description=(
            "The most recent predictions checked for collapse on every snapshot, so that "
            "a collapse shows within this many rows, before the window notices it."
        ),
    )
    thresholds: DriftThresholds = Field(
        default_factory=DriftThresholds, description="Thresholds of every model not listed below."
    )
    models: dict[str, DriftThresholds] = Field(
        default_factory=dict, description="Thresholds for particular models, by model name."
    )

    @model_validator(mode="after")
    def _blocks_fit(self) -> DriftSettings:
        if self.window_rows % self.block_rows:
            raise ValueError(
                f"window_rows {self.window_rows} must be a multiple of block_rows {self.block_rows}"
            )
        return self

    @property
    def blocks(self) -> int:
        """Number of blocks in a window."""
        return self.window_rows // self.block_rows

    def thresholds_for(self, model: str) -> DriftThresholds:
        """Thresholds of model ``model``: its own if listed, the defaults otherwise."""
        return self.models.get(model, self.thresholds)


class PromotionCriteria(BaseModel):
    """What shadow evidence ``keel promote`` needs before it moves ``production``.

    The defaults ask for a day of real traffic: a candidate that only saw a quiet
    hour has not met the night batch jobs or the morning peak.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_mirrored: int = Field(
        default=1000, ge=0, description="Fewest requests the candidate must have answered."
    )
    min_hours: float = Field(
        default=24.0, ge=0, description="Shortest time the mirrored requests must span, in hours."
    )
    max_error_rate: float = Field(
        default=0.001, ge=0, le=1, description="Highest share of mirrored requests that failed."
    )
    max_timeout_rate: float = Field(
        default=0.01, ge=0, le=1, description="Highest share of mirrored requests that timed out."
    )
    max_drop_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description=(
            "Highest share of sampled requests dropped because the shadow queue was full: "
            "past it the evidence leaves out the busiest moments."
        ),
    )
    min_agreement: float = Field(
        default=0.98,
        ge=0,
        le=1,
        description=(
            "Lowest agreement with production: the share of rows with the same label "
            "(classifiers), or with scores within score_tolerance (other outputs)."
        ),
    )
    score_tolerance: float = Field(
        default=0.05,
        ge=0,
        description="Largest absolute difference of two scores that still counts as agreeing.",
    )
    max_p99_ratio: float = Field(
        default=1.5,
        gt=0,
        description="Highest candidate p99 latency as a multiple of production's p99.",
    )


class LogStoreSettings(BaseModel):
    """The prediction log: where shadow comparisons are written, and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(
        default="sqlite:///keel-predictions.sqlite",
        description=(
            "sqlite:///PATH (a file, WAL mode; relative to the working folder) or "
            "postgresql://USER@HOST/DB for many replicas writing to one log."
        ),
    )
    store_inputs: bool = Field(
        default=True,
        description=(
            "Log each request's model inputs; off, only their SHA-256 is kept (for "
            "inputs that must not be stored)."
        ),
    )
    flush_interval_s: float = Field(
        default=0.5, gt=0, description="How often buffered records are written, at most."
    )
    batch_records: int = Field(
        default=500, ge=1, description="Records written in one transaction, at most."
    )
    max_pending: int = Field(
        default=50_000,
        ge=1,
        description=(
            "Records buffered at most, whatever the measured rate (the limit until a full "
            "batch has been measured); past it new records are dropped (and counted), so a "
            "dead store never grows the server's memory."
        ),
    )
    max_pending_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Seconds of writing the buffer may hold, at the rate the store was last "
            "measured to write full batches; past it new records are dropped (and counted "
            "as queue_full). Bounds what a SIGKILL can lose."
        ),
    )
    close_timeout_s: float = Field(
        default=10.0, ge=0, description="On shutdown, how long buffered records may take to write."
    )


class ShadowTarget(BaseModel):
    """One served model's candidate: a registry version in this process, or a remote v2 model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="The served (primary) model whose traffic is mirrored.")
    candidate: str = Field(
        default="", description="NAME@ALIAS or NAME@VERSION in the registry, run in-process."
    )
    url: str = Field(
        default="",
        description=(
            "A remote Open Inference Protocol model: http://HOST:PORT/v2/models/NAME[/versions/V]."
        ),
    )

    @model_validator(mode="after")
    def _one_candidate(self) -> ShadowTarget:
        if bool(self.candidate) == bool(self.url):
            raise ValueError(f"shadow of '{self.model}': give exactly one of candidate and url")
        return self


class ShadowSettings(BaseModel):
    """Mirroring live traffic to candidates, which never touches the primary's answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    targets: list[ShadowTarget] = Field(
        default_factory=list, description="Candidates, one per served model at most."
    )
    sample_rate: float = Field(
        default=1.0, ge=0, le=1, description="Share of primary requests mirrored to the candidate."
    )
    timeout_ms: float = Field(
        default=100.0,
        gt=0,
        description="A candidate call still running after this is abandoned and logged as timeout.",
    )
    queue_size: int = Field(
        default=256,
        ge=1,
        description="Mirrored requests waiting for the candidate; past it they are dropped.",
    )
    concurrency: int = Field(
        default=2, ge=1, description="Candidate calls running at once, per candidate."
    )
    threads: int = Field(
        default=1,
        ge=1,
        description=(
            "Threads running an in-process candidate's model, apart from the primary's: "
            "a slow candidate can use no more of the machine than this."
        ),
    )
    pause_after_timeouts: int = Field(
        default=5,
        ge=0,
        description=(
            "Timeouts in a row after which calls to the candidate pause, so that a hung "
            "candidate costs no connections or abandoned calls; requests mirrored meanwhile "
            "are logged as dropped. 0 never pauses."
        ),
    )
    pause_s: float = Field(
        default=1.0,
        gt=0,
        description=(
            "Seconds of the first pause; one call is then tried, and each pause it ends "
            "with another timeout doubles, up to max_pause_s. An answer ends the pausing."
        ),
    )
    max_pause_s: float = Field(default=30.0, gt=0, description="Longest pause, in seconds.")
    log_unmirrored_rate: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Share of requests not mirrored (sampled out) still logged, primary only.",
    )
    log: LogStoreSettings = Field(default_factory=LogStoreSettings)
    promotion: PromotionCriteria = Field(default_factory=PromotionCriteria)

    @model_validator(mode="after")
    def _pauses_grow(self) -> ShadowSettings:
        if self.max_pause_s < self.pause_s:
            raise ValueError(
                f"max_pause_s ({self.max_pause_s:g}) must be at least pause_s ({self.pause_s:g})"
            )
        return self

    @model_validator(mode="after")
    def _one_per_model(self) -> ShadowSettings:
        models = [t.model for t in self.targets]
        repeated = sorted({m for m in models if models.count(m) > 1})
        if repeated:
            raise ValueError(f"one shadow candidate per model; repeated: {repeated}")
        return self

    def target_of(self, model: str) -> ShadowTarget | None:
        """The candidate mirroring ``model``'s traffic, if any."""
        return next((t for t in self.targets if t.model == model), None)


class LogSettings(BaseModel):
    """What keel writes to its standard error: the format, and whether each request is logged."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "'text': a line of words per event; 'json': one JSON object per line (time, level, "
            "logger, message, and model, version, request_id, trace_id where known), as Loki, "
            "Elasticsearch and Cloud Logging read them."
        ),
    )
    access: bool = Field(
        default=False,
        description=(
            "A line per request answered, HTTP and gRPC: method, path, status, bytes, "
            "duration, model, version, request id (X-Request-Id, or gRPC's request id) and "
            "trace id (W3C traceparent), on the logger keel.access."
        ),
    )


class Settings(BaseSettings):
    """Everything keel can be told; environment variables use the ``KEEL_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="KEEL_", env_nested_delimiter="__", extra="forbid")

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
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    models: list[str] = Field(
        default_factory=list,
        description="Models to serve (NAME@ALIAS or NAME@VERSION) beside the command line's.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token for the model-repository (load/unload) endpoints; "
            "with none set those endpoints are off."
        ),
    )
