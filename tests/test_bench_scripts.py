"""Benchmark scripts users run from docs/benchmarks.md: a mistake is one line, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_the_workers_benchmark_names_the_missing_models_and_how_to_publish_them(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "registry"
    ran = subprocess.run(
        [sys.executable, str(BENCH / "workers.py"), "--registry", str(empty), "--no-docs"],
        capture_output=True, text=True, timeout=60, cwd=BENCH,
    )  # fmt: skip
    assert ran.returncode == 1
    assert "Traceback" not in ran.stderr
    (line,) = ran.stderr.strip().splitlines()
    assert f"model 'breast-cancer' has no published version in {empty}" in line
    assert f"keel demo --no-serve --registry {empty}" in line
