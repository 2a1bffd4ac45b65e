"""``keel env diff`` and ``keel env lock``: the environment a model was trained in."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from keel.cli.context import JsonOption, RegistryOption, console, open_registry, settings_for
from keel.environment import normalise
from keel.verification import environment_diff

app = typer.Typer(
    help="Compare environments with the one recorded at publish, or recreate it.",
    no_args_is_help=True,
)


@app.command("lock")
def lock(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION, NAME@ALIAS or NAME@latest.")],
    registry: RegistryOption = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            "-x",
            help="Leave this distribution out (e.g. your training package, installed from "
            "its checkout). Repeatable.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print the exact requirements of the training environment, pip-installable.

    A distribution installed from a local checkout or file rather than an index
    is a comment naming where it came from: install that one from its source.
    """
    meta = open_registry(settings_for(registry)).resolve(ref)
    recorded = meta.environment.without({normalise(name) for name in exclude or []})
    dirty = ", dirty work tree" if meta.source.git_dirty else ""
    header = f"# {meta.ref}: trained from git {meta.source.git_sha}{dirty}\n"
    # Plain print: rich would wrap long lines and read '[...]' as markup.
    print(header + recorded.requirements_lock(), end="")


@app.command("diff")
def diff(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION, NAME@ALIAS or NAME@latest.")],
    registry: RegistryOption = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when a critical library differs.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List packages whose versions differ; numerics-affecting ones are marked critical."""
    meta = open_registry(settings_for(registry)).resolve(ref)
    result = environment_diff(meta)
    if as_json:
        print(
            json.dumps(
                {
                    "python": {
                        "recorded": result.python_recorded,
                        "current": result.python_current,
                        "critical": result.python_differs,
                    },
                    "packages": [p.__dict__ for p in result.packages],
                },
                indent=2,
            )
        )
    elif not result.packages and not result.python_differs:
        console.print(f"the environment matches the one {meta.ref} was trained in")
    else:
        table = Table(title=f"environment of {meta.ref} → this one")
        for column in ("package", "recorded", "current", "critical"):
            table.add_column(column)
        if result.python_recorded != result.python_current:
            table.add_row(
                "python",
                result.python_recorded,
                result.python_current,
                "[red]yes" if result.python_differs else "",
            )
        ordered = sorted(result.packages, key=lambda p: (not p.critical, p.name))
        for p in ordered:
            table.add_row(
                p.name, p.recorded or "-", p.current or "-", "[red]yes" if p.critical else ""
            )
        console.print(table)
    if strict and result.has_critical:
        raise typer.Exit(1)
