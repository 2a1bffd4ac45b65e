"""What the numbers were measured on: CPU, cores, memory, Python and library versions."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psutil

LIBRARIES = (
    "keel",
    "onnxruntime",
    "numpy",
    "uvicorn",
    "uvloop",
    "httptools",
    "starlette",
    "fastapi",
    "pydantic",
    "orjson",
    "tritonclient",
)


def describe(repo: Path) -> dict[str, Any]:
    """CPU model, core count, memory, kernel, Python, library versions and the git commit."""
    return {
        "cpu": _cpu_model(),
        "virtual_machine": _cpu_flag("hypervisor"),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "bytecode_cache": _bytecode_cached("starlette"),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "git_commit": _git(repo, "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git(repo, "status", "--porcelain", "--", "src")),
    }


def _bytecode_cached(module: str) -> bool:
    """Whether an installed module has its compiled .pyc: without them every start compiles."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return False
    return Path(importlib.util.cache_from_source(spec.origin)).exists()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flag(flag: str) -> bool:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return flag in line.split(":", 1)[1].split()
    except OSError:
        pass
    return False


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            [shutil.which("git") or "git", *args],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()
