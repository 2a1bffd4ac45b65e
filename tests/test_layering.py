"""Imports go down the layers only: CI fails on one that goes up.

docs/architecture.md draws the layers. This reads every module's imports (``ast``,
nothing is imported) and fails on an import of a layer above the importer's.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first; a module may import its own layer and those below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("keel.errors", "keel.regular_files", "keel.background", "keel.settings",
     "keel.configuration", "keel.settings_reference", "keel.signature", "keel.environment",
     "keel.reference", "keel.records", "keel.cpus", "keel.digest_memo", "keel.shared_files",
     "keel.log_output", "keel.tracing", "keel.otlp_encoding", "keel.span_queue",
     "keel.span_records"),
    ("keel.runtimes", "keel.golden", "keel.registry"),
    ("keel.loading", "keel.verification", "keel.publish_checks", "keel.publishing",
     "keel.source", "keel.examples", "keel"),
    ("keel.monitoring", "keel.logstore"),
    ("keel.serving",),
    ("keel.shadow",),
    ("keel.web",),
    ("keel.cli", "keel.__main__"),
)  # fmt: skip


def _layer(module: str) -> int:
    parts = module.split(".")
    for size in (2, 1):
        prefix = ".".join(parts[:size])
        for index, members in enumerate(LAYERS):
            if prefix in members:
                return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "keel" or name.startswith("keel.")}


def _upward(src: Path = SRC) -> set[tuple[str, str]]:
    upward = set()
    for path in sorted((src / "keel").rglob("*.py")):
        module = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        for imported in _imports(path):
            if _layer(imported) > _layer(module):
                package = ".".join(imported.split(".")[:2])
                upward.add((module, package))
    return upward


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = sorted(_upward())
    assert not upward, f"imports up the layers (docs/architecture.md): {upward}"


def test_an_import_up_the_layers_is_found(tmp_path: Path) -> None:
    (tmp_path / "keel" / "signature").mkdir(parents=True)
    (tmp_path / "keel" / "records.py").write_text("from keel.signature import Signature\n")
    (tmp_path / "keel" / "signature" / "arrays.py").write_text(
        "import numpy\nfrom keel.serving.calls import Reply\nimport keel.cli.app\n"
    )
    assert _upward(tmp_path) == {
        ("keel.signature.arrays", "keel.serving"),
        ("keel.signature.arrays", "keel.cli"),
    }
