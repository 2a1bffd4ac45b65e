"""ONNX weights laid out to be shared between processes: derived once into keel's cache.

ONNX Runtime parses an inline ``.onnx`` (what the registry holds) into the memory
of each process that loads it: N processes, N private copies of the weights. It
maps initializers kept as external data from their file instead, ``MAP_PRIVATE``,
so their pages stay shared through the page cache until something writes to them;
and since prepacking rewrites MatMul weights at load (a private copy again), the
prepacked form is saved beside them and read back as it is. That layout is made by
one ONNX Runtime session with the optimised model written out, and what it holds
may be specific to this CPU (ONNX Runtime warns of it), so it lives in the local
cache, keyed by the artifact's digest, the ONNX Runtime version, the optimisation
level and the CPU, and never in the registry. Its files' digests are recorded
when it is derived and checked before each use, like an artifact's; a layout that
fails the check is derived again from the verified artifact. Measured in
docs/benchmarks.md (memory with several processes, speed at batch 1 and 64).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from keel.digest_memo import DigestMemo
from keel.errors import RuntimeFailure, UnsafeArtifact
from keel.registry.storage import sha256_stream
from keel.regular_files import open_regular
from keel.runtimes.onnx_runtime import ORT_ERRORS, session_options
from keel.settings import RuntimeSettings
from keel.shared_files import exclusive

log = logging.getLogger("keel.runtimes")

MODEL = "model.onnx"
WEIGHTS = "weights.bin"
MANIFEST = "layout.json"
# Part of every layout's key: raised when what a layout holds changes, so none is reused.
LAYOUT_FORMAT = 1
# Initializers this small stay in the graph: sharing a few bytes saves nothing.
_MIN_EXTERNAL_BYTES = 1024


@dataclass(frozen=True)
class LayoutCache:
    """Where layouts are kept, and what identifies the model one is wanted for."""

    folder: Path
    # The digest the artifact was verified against: the layout is found again by it.
    artifact_sha256: str
    # The model's files together: only a large model is worth a layout.
    model_bytes: int
    # The server's notes of files hashed already: N workers check a layout's digests once.
    memo: DigestMemo | None = None


def shared_layout(artifact: Path, cache: LayoutCache, settings: RuntimeSettings) -> Path:
    """The model file of ``artifact``'s shared layout, derived into ``cache`` when missing.

    ``artifact`` must already be verified against ``cache.artifact_sha256``. Raises
    OSError when the cache cannot be written, RuntimeFailure when no layout can be made.
    """
    folder = cache.folder / _key(cache.artifact_sha256, settings)
    if _problem(folder, cache.folder, cache.memo) is None:
        return folder / MODEL
    cache.folder.mkdir(parents=True, exist_ok=True)
    # One process derives while the others starting beside it wait, then use its layout.
    with exclusive(cache.folder / f"{folder.name}.lock"):
        problem = _problem(folder, cache.folder, cache.memo)
        if problem is None:
            return folder / MODEL
        if folder.exists() or folder.is_symlink():
            log.warning("the shared ONNX layout %s %s: deriving it again", folder, problem)
            _remove(folder)
        # Its manifest holds the digests of the files as written: checked at the next use.
        _derive(artifact, folder, settings)
    return folder / MODEL


def _remove(folder: Path) -> None:
    if folder.is_symlink():
        folder.unlink()
    else:
        shutil.rmtree(folder, ignore_errors=True)


def _key(artifact_sha256: str, settings: RuntimeSettings) -> str:
    """What the layout depends on: the model, the runtime that optimised it, and the CPU."""
    facts = {
        "layout": LAYOUT_FORMAT,
        "artifact": artifact_sha256,
        "onnxruntime": ort.__version__,
        "graph_optimization": settings.graph_optimization,
        "cpu": _cpu(),
    }
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    return f"{artifact_sha256[:16]}-{digest[:16]}"


def _cpu() -> str:
    """The machine and the instruction-set extensions of its CPU, which optimisations use."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                    break
    except OSError:
        flags = platform.processor()
    return f"{platform.machine()} {flags}"


def _derive(artifact: Path, folder: Path, settings: RuntimeSettings) -> None:
    """Write the layout into a folder of its own, then move it into place in one rename."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    started = time.perf_counter()
    options = session_options(settings)
    options.optimized_model_filepath = str(scratch / MODEL)
    # ONNX Runtime warns that the optimised model may suit only this machine's CPU: it
    # is kept in this machine's cache under the CPU's key, for this machine alone.
    options.log_severity_level = 3
    for key, value in (
        ("session.optimized_model_external_initializers_file_name", WEIGHTS),
        (
            "session.optimized_model_external_initializers_min_size_in_bytes",
            str(_MIN_EXTERNAL_BYTES),
        ),
        ("session.save_external_prepacked_constant_initializers", "1"),
    ):
        options.add_session_config_entry(key, value)
    try:
        ort.InferenceSession(
            str(artifact), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except ORT_ERRORS as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise RuntimeFailure(
            f"ONNX Runtime could not derive a shared layout of {artifact}: {exc}"
        ) from exc
    files = {
        name: _sha256(scratch / name, scratch)
        for name in (MODEL, WEIGHTS)
        if (scratch / name).exists()
    }
    (scratch / MANIFEST).write_text(json.dumps({"files": files, "source": str(artifact)}, indent=1))
    scratch.chmod(0o755)  # mkdtemp's 0700 would keep another user's workers out
    scratch.rename(folder)
    log.info(
        "derived the shared ONNX layout of %s in %.2f s into %s",
        artifact,
        time.perf_counter() - started,
        folder,
    )


def _problem(folder: Path, cache: Path, memo: DigestMemo | None = None) -> str | None:
    """Why the layout in ``folder`` cannot be used, or None when every digest matches.

    The digests catch a layout damaged or cut short (a full disk, a crash while it was
    written); they do not make the cache safe from someone who may write to it, who
    could rewrite a manifest too. The cache is trusted as the model's own folder is.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files: dict[str, str] = manifest["files"]
    except FileNotFoundError:
        return "is missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"has an unreadable manifest ({exc})"
    if MODEL not in files:
        return "has no model file in its manifest"
    for name, expected in files.items():
        try:
            actual = _sha256(folder / name, cache, memo)
        except (OSError, UnsafeArtifact) as exc:
            return f"cannot be read ({exc})"
        if actual != expected:
            return f"has a {name} whose digest is not the one recorded"
    return None


def _sha256(path: Path, below: Path, memo: DigestMemo | None = None) -> str:
    with open_regular(path, below) as stream:
        return sha256_stream(stream)[0] if memo is None else memo.digest(stream, sha256_stream)[0]
