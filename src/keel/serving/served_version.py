"""One model version being served: loaded, verified, golden-checked, warmed, batched."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from keel.environment import EnvironmentDiff, TrainingEnvironment, capture_environment
from keel.errors import GoldenMismatch, KeelError, NonFiniteOutput, NotReady
from keel.golden import check_golden
from keel.loading import LoadedModel, load_version
from keel.monitoring.metrics import ServingMetrics
from keel.monitoring.monitor import VersionMonitor
from keel.monitoring.window import DriftWindow
from keel.registry import ModelMetadata, Registry
from keel.serving.arrivals import Arrivals
from keel.serving.batcher import Batcher, Tensors
from keel.serving.calls import VERSION_HEADER
from keel.serving.tensor_contract import TensorContract, build_contract
from keel.serving.v2_fast_path import V2FastPath, build_fast_path
from keel.settings import BatchingSettings, DriftSettings, RuntimeSettings, Settings
from keel.signature import Signature, synthetic_records, to_arrays
from keel.verification import environment_diff

log = logging.getLogger("keel.serving")

WARMUP_SINGLE_CALLS = 8
WARMUP_BATCH_CALLS = 3


class VersionState(StrEnum):
    """Where a version is in its life; only READY versions take traffic."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    RETIRED = "retired"


def version_label(version: str) -> str:
    """The registry version ``sha/timestamp`` as one URL path segment: ``sha-timestamp``."""
    return version.replace("/", "-", 1)


@dataclass(frozen=True)
class ReadinessTimings:
    """Seconds spent on each step before the version became ready."""

    load_s: float
    golden_s: float
    warmup_s: float
    batch_call_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.load_s + self.golden_s + self.warmup_s


@dataclass
class ServedVersion:
    """A registry version inside the server, with its state and, once ready, its batcher."""

    metadata: ModelMetadata
    state: VersionState = VersionState.LOADING
    failure: str | None = None
    loaded: LoadedModel | None = None
    batcher: Batcher | None = None
    timings: ReadinessTimings | None = None
    contract: TensorContract | None = None
    # v2 requests that fit the contract exactly, decoded and checked in one pass.
    v2_fast_path: V2FastPath | None = None
    aliases: set[str] = field(default_factory=set)
    metrics: ServingMetrics = field(init=False)
    # None until the check has run (a version whose hashes fail never gets that far).
    golden_passed: bool | None = None
    # Critical packages (and Python) that differ from the training environment.
    environment_mismatches: int | None = None
    monitor: VersionMonitor | None = None
    # What the protocol modules derive from the version once (the records API's answer
    # plan), kept here so that a request finds it in one dictionary lookup.
    derived: dict[str, Any] = field(default_factory=dict)
    # The model's name: a plain attribute, read several times by every request.
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.metadata.name
        signature = self.metadata.signature
        declared = [f.name for f in signature.features] + [i.name for i in signature.inputs]
        self.metrics = ServingMetrics(declared)

    @functools.cached_property
    def label(self) -> str:
        return version_label(self.metadata.version)

    @functools.cached_property
    def label_header(self) -> tuple[bytes, bytes]:
        """The response header that says which version answered."""
        return VERSION_HEADER.encode(), self.label.encode()

    @property
    def ready(self) -> bool:
        return self.state is VersionState.READY

    def require_batcher(self) -> Batcher:
        """The batcher of a ready version; NotReady (with the reason) otherwise."""
        if self.state is not VersionState.READY or self.batcher is None:
            reason = f": {self.failure}" if self.failure else ""
            raise NotReady(f"{self.name} version {self.label} is {self.state.value}{reason}")
        return self.batcher


def prepare(
    registry: Registry,
    metadata: ModelMetadata,
    runtime_settings: RuntimeSettings,
    batching: BatchingSettings,
    environment: EnvironmentDiff | None = None,
) -> tuple[LoadedModel, ReadinessTimings]:
    """Load a version and prove it works; blocking, so it runs in a worker thread.

    Hashes are verified, the golden examples must reproduce within tolerance,
    and warm-up runs a full batch plus single rows generated from the
    signature, so the first real request pays no initialisation tax. A golden
    failure names the critical libraries in ``environment`` that differ from
    training: a dependency bump is the usual cause, and the operator should
    see it in the same message.
    """
    started = time.perf_counter()
    loaded = load_version(registry, metadata, runtime_settings, shared_layout=True)
    try:
        loaded_at = time.perf_counter()
        report = check_golden(loaded.runtime, metadata.signature, metadata.golden)
        if not report.ok:
            changed = environment.critical_changes() if environment is not None else []
            cause = (
                f"; the serving environment differs from training in: {', '.join(changed)}"
                if changed
                else ""
            )
            raise GoldenMismatch(
                f"{metadata.ref} does not reproduce its golden outputs: "
                + "; ".join(report.failures())
                + cause
            )
        golden_at = time.perf_counter()
        batch_call_s = warm_up(loaded, batching.max_batch_size)
        warmed_at = time.perf_counter()
    except BaseException:
        loaded.close()
        raise
    return loaded, ReadinessTimings(
        load_s=loaded_at - started,
        golden_s=golden_at - loaded_at,
        warmup_s=warmed_at - golden_at,
        batch_call_s=batch_call_s,
    )


def warm_up(loaded: LoadedModel, batch_rows: int) -> float:
    """Run full batches and several single rows through the model; the full batch's time.

    The fastest of a few full-batch calls is what a warm model costs, and decides
    whether the batcher may call it on the event loop.
    """
    signature = loaded.metadata.signature
    records = synthetic_records(signature, max(batch_rows, 1))
    batch = to_arrays(records, signature)
    durations = []
    for _ in range(WARMUP_BATCH_CALLS):
        started = time.perf_counter()
        loaded.runtime.predict(batch)
        durations.append(time.perf_counter() - started)
    for row in range(min(WARMUP_SINGLE_CALLS, len(records))):
        loaded.runtime.predict(
            {name: np.ascontiguousarray(a[row : row + 1]) for name, a in batch.items()}
        )
    return min(durations)


async def start_version(
    version: ServedVersion,
    registry: Registry,
    settings: Settings,
    executor: Executor,
    arrivals: Arrivals | None = None,
    model_executor: Executor | None = None,
) -> None:
    """Prepare a version off the event loop, then give it a batcher; FAILED (with why) on error.

    ``executor`` loads and checks the version; its batches run on ``model_executor``,
    or by default on threads of the version's own (see ``Batcher``).
    """
    loop = asyncio.get_running_loop()
    batching = settings.batching
    environment = await loop.run_in_executor(executor, _environment_of, version.metadata)
    version.environment_mismatches = len(environment.critical_changes())
    if settings.server.strict_env and environment.has_critical:
        version.state = VersionState.FAILED
        version.failure = (
            f"{version.metadata.ref} is refused (server.strict_env): the serving environment "
            f"differs from training in: {', '.join(environment.critical_changes())}"
        )
        log.critical("model %s is not ready: %s", version.metadata.ref, version.failure)
        return
    try:
        loaded, timings = await loop.run_in_executor(
            executor,
            prepare,
            registry,
            version.metadata,
            settings.runtime,
            batching,
            environment,
        )
    except KeelError as exc:
        version.state = VersionState.FAILED
        version.failure = str(exc)
        if isinstance(exc, GoldenMismatch):
            version.golden_passed = False
        log.error("model %s is not ready: %s", version.metadata.ref, exc)
        return
    except Exception as exc:
        # Not keel's own refusal: a store that failed mid-download, a runtime that
        # crashed. The version is refused all the same, and the server lives on.
        version.state = VersionState.FAILED
        version.failure = f"loading failed: {type(exc).__name__}: {exc}"
        log.exception("model %s is not ready", version.metadata.ref)
        return
    version.golden_passed = True
    version.loaded = loaded
    version.timings = timings
    version.contract = build_contract(version.metadata.signature, loaded.runtime.inputs)
    version.v2_fast_path = build_fast_path(version.contract)
    run = loaded.runtime.predict
    monitor = _monitor_of(version.metadata, settings.drift)
    version.batcher = Batcher(
        run if monitor is None else monitor.watch(run),
        batching,
        model_executor,
        name=version.metadata.ref,
        inline=_may_run_inline(version.metadata.ref, loaded, timings, batching),
        arrivals=arrivals,
    )
    version.batcher.trace_attributes = {
        "keel.model.name": version.name,
        "keel.model.version": version.label,
    }
    try:
        await _warm_batcher(version.batcher, version.metadata.signature, batching)
    except KeelError as exc:
        version.state = VersionState.FAILED
        version.failure = f"warm-up through the batcher failed: {exc}"
        log.error("model %s is not ready: %s", version.metadata.ref, version.failure)
        await version.batcher.close(timeout=settings.server.grace_period_s)
        loaded.close()
        return
    version.batcher.observer = version.metrics.batch_done
    if monitor is not None:
        monitor.enabled = True
    version.monitor = monitor
    version.state = VersionState.READY
    log.info(
        "model %s ready in %.3f s (load+hashes %.3f s, golden %.3f s, warm-up %.3f s)",
        version.metadata.ref,
        timings.total_s,
        timings.load_s,
        timings.golden_s,
        timings.warmup_s,
    )


def _may_run_inline(
    ref: str, loaded: LoadedModel, timings: ReadinessTimings, batching: BatchingSettings
) -> bool:
    """Whether the version's batches may run on the event loop: fast, and no input slower.

    Warm-up timed synthetic rows; only a runtime whose cost its input shapes bound
    promises that no row a client sends costs more (a Loop whose trip count is a
    feature ran 9 s on one row and microseconds on warm-up's).
    """
    if timings.batch_call_s * 1e6 >= batching.inline_below_us:
        return False
    caveat = loaded.runtime.value_dependent_cost
    if caveat is not None:
        log.info(
            "model %s runs on worker threads, though its warm-up batch took %.0f us: %s",
            ref,
            timings.batch_call_s * 1e6,
            caveat,
        )
        return False
    return True


def _monitor_of(metadata: ModelMetadata, drift: DriftSettings) -> VersionMonitor | None:
    """The drift monitor of a version, or None (logged) if it has no reference to compare with."""
    if not drift.enabled:
        return None
    if metadata.reference is None:
        log.warning("model %s has no reference statistics: drift is not monitored", metadata.ref)
        return None
    return VersionMonitor(DriftWindow.for_model(metadata, drift), metadata.signature)


async def _warm_batcher(batcher: Batcher, signature: Signature, batching: BatchingSettings) -> None:
    """Send single rows through the batcher the way requests will come.

    Warm-up in ``prepare`` ran the model on one worker thread; a fast model is
    then called on the event loop's thread (``inline``) and a slow one on the
    version's own threads, and ONNX Runtime sets up per-thread state on a thread's
    first run.
    Without this the first real requests paid that set-up (measured: the first
    request after ready took 6.8x the hundredth).
    """
    row = to_arrays(synthetic_records(signature, 1), signature)
    for _ in range(WARMUP_SINGLE_CALLS):
        await _warm_call(batcher, row)
    # Side by side, to reach each of the version's threads; never more than the queue holds.
    together = min(WARMUP_SINGLE_CALLS, batching.max_queue_size)
    await asyncio.gather(*(_warm_call(batcher, row) for _ in range(together)))


async def _warm_call(batcher: Batcher, row: Tensors) -> None:
    # A synthetic row may lie where the model answers no number (the log of 0): the
    # model ran, which is all warm-up asks, and a client sending it is refused.
    with contextlib.suppress(NonFiniteOutput):
        await batcher.submit(row)


@functools.cache
def _running_environment() -> TrainingEnvironment:
    # A process's installed packages do not change while it runs: scanning them
    # (about 70 ms) once, not once per version loaded.
    return capture_environment()


def _environment_of(metadata: ModelMetadata) -> EnvironmentDiff:
    """The running environment against the training one, with critical differences logged."""
    diff = environment_diff(metadata, _running_environment())
    if diff.has_critical:
        log.warning(
            "model %s runs in a different environment than it was trained in: %s",
            metadata.ref,
            ", ".join(diff.critical_changes()),
        )
    return diff


async def retire_version(version: ServedVersion, grace_s: float) -> None:
    """Stop taking requests, let in-flight ones finish, then free the model."""
    version.state = VersionState.RETIRED
    if version.batcher is not None:
        await version.batcher.close(timeout=grace_s)
    if version.loaded is not None:
        version.loaded.close()
