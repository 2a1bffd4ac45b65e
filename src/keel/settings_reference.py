"""The configuration reference (docs/configuration.md), generated from the settings themselves.

Run ``python -m keel.settings_reference > docs/configuration.md``; a test keeps
the committed file equal to this output, so the reference cannot drift.
"""

from __future__ import annotations

import json

from keel.configuration import env_name, setting_fields

HEADER = """# Configuration

Every setting has a default that works on a laptop. Set one with an environment
variable (`KEEL_` + the name, `__` between nested names), in a TOML file given to
`keel serve --config FILE` (the same names, nested ones as tables), or, for a
few, with a command-line flag. Environment variables override the file; flags
override both.

Configuration is strict: a key in the file that names no setting (at the top or
in any table), a `KEEL_` environment variable that names none, or a value out of
range (a port outside 1-65535) stops any `keel` command that reads the settings
(`keel serve` before it listens) with exit code 2 and a message naming the key and
the closest setting: `environment variable KEEL_SERVER__PROT names no setting (did
you mean KEEL_SERVER__PORT?)`. The only `KEEL_` variables that are not settings
are those Kubernetes sets for a Service named `keel` or `keel-…` in the pod's
namespace (`KEEL_SERVICE_HOST`, `KEEL_SERVICE_PORT…`, `KEEL_PORT=tcp://…`,
`KEEL_PORT_8080_TCP…`); keel's test and benchmark harnesses use other prefixes.

| environment variable | default | what it does |
| --- | --- | --- |
"""


def settings_markdown() -> str:
    """The reference table of every setting, nested ones included."""
    return HEADER + "".join(_rows()) + "\n"


def _rows() -> list[str]:
    rows = []
    for path, field in setting_fields():
        default = field.get_default(call_default_factory=True)
        shown = "(none)" if default is None else f"`{json.dumps(default)}`"
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{env_name(path)}` | {shown} | {description} |\n")
    return rows


if __name__ == "__main__":
    print(settings_markdown(), end="")
