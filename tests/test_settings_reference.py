"""docs/configuration.md is exactly what the settings say about themselves."""

from __future__ import annotations

from pathlib import Path

from keel.settings_reference import settings_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_configuration_reference_is_up_to_date() -> None:
    assert DOC.read_text() == settings_markdown(), (
        "regenerate it: .venv/bin/python -m keel.settings_reference > docs/configuration.md"
    )


def test_every_setting_is_described() -> None:
    rows = [line for line in settings_markdown().splitlines() if line.startswith("| `KEEL_")]
    assert len(rows) > 10
    assert all(not row.rstrip().endswith("|  |") for row in rows)
