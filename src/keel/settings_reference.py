"""The configuration reference (docs/configuration.md), generated from the settings themselves.

Run ``python -m keel.settings_reference > docs/configuration.md``; a test keeps
the committed file equal to this output, so the reference cannot drift.
"""

from __future__ import annotations

import json

from pydantic import BaseModel

from keel.settings import Settings

HEADER = """# Configuration

Every setting has a default that works on a laptop. Set one with an environment
variable (`KEEL_` + the name, `__` between nested names), in a TOML file given to
`keel serve --config FILE` (the same names, nested ones as tables), or, for a
few, with a command-line flag. Environment variables override the file; flags
override both.

| environment variable | default | what it does |
| --- | --- | --- |
"""


def settings_markdown() -> str:
    """The reference table of every setting, nested ones included."""
    return HEADER + "".join(_rows(Settings, "KEEL_")) + "\n"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(_rows(annotation, f"{prefix}{name.upper()}__"))
            continue
        default = field.get_default(call_default_factory=True)
        shown = "(none)" if default is None else f"`{json.dumps(default)}`"
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{prefix}{name.upper()}` | {shown} | {description} |\n")
    return rows


if __name__ == "__main__":
    print(settings_markdown(), end="")
