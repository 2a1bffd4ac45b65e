"""``keel alias set``, ``keel alias delete`` and ``keel alias history``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli.context import (
    JsonOption,
    RegistryOption,
    console,
    err_console,
    open_registry,
    settings_for,
)

app = typer.Typer(
    help="Move and delete aliases (production, candidate, ...) and read their history.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="Model name.")]
ReasonOption = Annotated[str, typer.Option("--reason", "-m", help="Why; kept in the history.")]


@app.command("set")
def set_alias(
    name: NameArgument,
    alias: Annotated[str, typer.Argument(help="Alias to set, e.g. production.")],
    version: Annotated[
        str,
        typer.Argument(
            help="Version: its short id, SHA/TIME (or a unique prefix), another alias, or latest."
        ),
    ],
    reason: ReasonOption = "",
    registry: RegistryOption = None,
) -> None:
    """Point an alias at a version; the change is appended to the history.

    An alias that differs from an existing one only by case is refused.
    """
    store = open_registry(settings_for(registry))
    event = store.set_alias(name, alias, version, reason=reason)
    ids = store.short_ids(name)
    new = f"{ids[event.version]} ({event.version})" if event.version else "-"
    was = f", was {ids.get(event.previous, event.previous)}" if event.previous else ""
    console.print(f"{name}@{alias} → {new}{was}", markup=False, highlight=False)


@app.command("delete")
def delete_alias(
    name: NameArgument,
    alias: Annotated[str, typer.Argument(help="Alias to delete.")],
    reason: ReasonOption = "",
    registry: RegistryOption = None,
) -> None:
    """Remove an alias; the removal (who, when, why) is appended to the history.

    A server that serves NAME@ALIAS keeps answering with the version it has and
    warns at each watch until the alias is set again, when it swaps as usual.
    """
    store = open_registry(settings_for(registry))
    event = store.delete_alias(name, alias, reason=reason)
    previous = event.previous or "-"
    short = store.short_ids(name).get(previous, previous)
    console.print(f"{name}@{alias} deleted (was {short})", markup=False, highlight=False)
    err_console.print(
        f"note: running servers of {name}@{alias} keep answering with {short}, and warn at "
        "each alias check, until the alias is set again",
        markup=False,
        highlight=False,
    )


@app.command("history")
def history(
    name: NameArgument,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every alias change of a model: when, who, what moved (by short id), and why."""
    store = open_registry(settings_for(registry))
    events = store.alias_history(name)
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
        return
    ids = store.short_ids(name)
    table = Table(title=escape(f"Alias history of {name}"))
    # Narrow terminals wrap names and versions onto more lines rather than cut them.
    for column in ("when (UTC)", "alias", "from", "to", "by", "reason"):
        table.add_column(column, overflow="fold", min_width=7)
    for e in events:
        table.add_row(
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.alias,
            ids.get(e.previous, e.previous) if e.previous else "-",
            ids.get(e.version, e.version) if e.version else "(deleted)",
            escape(e.by),
            escape(e.reason),
        )
    console.print(table)
