"""``keel alias set`` and ``keel alias history``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from keel.cli.context import JsonOption, RegistryOption, console, open_registry, settings_for

app = typer.Typer(
    help="Move aliases (production, candidate, ...) and read their history.", no_args_is_help=True
)


@app.command("set")
def set_alias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to set, e.g. production.")],
    version: Annotated[
        str, typer.Argument(help="Version (SHA/TIME or a unique prefix), another alias, or latest.")
    ],
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why; kept in the history.")] = "",
    registry: RegistryOption = None,
) -> None:
    """Point an alias at a version; the change is appended to the history."""
    store = open_registry(settings_for(registry))
    event = store.set_alias(name, alias, version, reason=reason)
    was = f" (was {event.previous})" if event.previous else ""
    console.print(f"{name}@{alias} → {event.version}{was}")


@app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Model name.")],
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every alias change of a model: when, who, what moved, and why."""
    events = open_registry(settings_for(registry)).alias_history(name)
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
        return
    table = Table(title=f"Alias history of {name}")
    for column in ("when (UTC)", "alias", "from", "to", "by", "reason"):
        table.add_column(column)
    for e in events:
        table.add_row(
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.alias,
            e.previous or "-",
            e.version or "(removed)",
            e.by,
            e.reason,
        )
    console.print(table)
