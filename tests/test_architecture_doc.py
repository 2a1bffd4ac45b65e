"""docs/architecture.md names every module of src/keel in its table, and no module that is gone.

A table cell names modules as a path under ``src/keel/`` (``serving/batcher.py``),
then, in the same cell, further modules of that folder by file name alone
(``arrivals.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "keel"
DOC = ROOT / "docs" / "architecture.md"


def _modules_in_code() -> set[str]:
    return {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py"
    }


def _modules_in_table(text: str) -> set[str]:
    named: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        folder = ""
        for name in re.findall(r"`([\w/]+\.py)`", line.split(" | ")[0]):
            if "/" in name:
                folder = name.rsplit("/", 1)[0] + "/"
                named.add(name)
            else:
                named.add(folder + name)
    return named


def test_every_module_is_in_the_architecture_table() -> None:
    missing = sorted(_modules_in_code() - _modules_in_table(DOC.read_text()))
    assert not missing, f"modules docs/architecture.md does not describe: {missing}"


def test_the_architecture_table_names_no_module_that_is_gone() -> None:
    gone = sorted(_modules_in_table(DOC.read_text()) - _modules_in_code())
    assert not gone, f"docs/architecture.md describes modules that do not exist: {gone}"


def test_a_cell_names_its_folder_once() -> None:
    table = "| `web/app.py`, `context.py` | x |\n| `errors.py` | y |\n"
    assert _modules_in_table(table) == {"web/app.py", "web/context.py", "errors.py"}
