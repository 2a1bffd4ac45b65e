"""N workers hold one copy of a model's weights: measured on the whole process tree's PSS.

PSS charges each shared page to the processes that map it in equal parts, so the
sum over the tree counts every page once. digits-wide-mlp (65 MiB of weights) is
served by 1 and by 4 workers, and so is breast-cancer (a few KiB), whose tree
measures what a worker costs without weights. Were each worker to hold its own
copy, 4 workers would add three more copies of the weights to that; mapping one
shared layout, they add a small part of one.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from keel_server import start_server

WIDE = "digits-wide-mlp"


@pytest.fixture(scope="module")
def wide_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    registry = tmp_path_factory.mktemp("wide") / "registry"
    published = subprocess.run(
        [sys.executable, "-m", "keel.examples.digits_wide_mlp", "--registry", str(registry)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert published.returncode == 0, published.stdout + published.stderr
    return registry


def tree_pss_mib(pid: int) -> float:
    """The PSS of ``pid`` and every process below it, in MiB."""
    pids, total = [pid], 0
    while pids:
        current = pids.pop()
        children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        pids.extend(int(child) for child in children)
        for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total / 1024


def served_pss(registry: Path, model: str, workers: int, folder: Path) -> float:
    folder.mkdir()
    server = start_server(
        registry, (f"{model}@production",), folder / "server.log", ("--workers", str(workers)),
        KEEL_CACHE_DIR=str(folder.parent / "cache"), KEEL_SERVER__WATCH_INTERVAL_S="0",
    )  # fmt: skip
    try:
        server.wait_ready(timeout=120)
        time.sleep(1.0)  # past the last allocations of warm-up
        return tree_pss_mib(server.process.pid)
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_four_workers_map_the_weights_once(
    wide_registry: Path, demo_registry: Path, tmp_path: Path
) -> None:
    weights_mib = sum(p.stat().st_size for p in wide_registry.rglob("model.onnx")) / 2**20
    pss = {
        (model, workers): served_pss(registry, model, workers, tmp_path / f"{model}-{workers}")
        for model, registry in ((WIDE, wide_registry), ("breast-cancer", demo_registry))
        for workers in (1, 4)
    }
    one = pss[WIDE, 1] - pss["breast-cancer", 1]
    four = pss[WIDE, 4] - pss["breast-cancer", 4]
    # The weights cost 4 workers about what they cost one; a copy each would add 3x.
    assert four - one < 0.5 * weights_mib, (pss, weights_mib)
    assert one > 0.75 * weights_mib, (pss, weights_mib)  # the model is in memory at all
