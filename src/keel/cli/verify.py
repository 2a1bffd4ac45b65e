"""``keel verify``: hashes, reload and golden outputs; non-zero exit on any difference."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from keel.cli.context import (
    RegistryOption,
    byte_progress,
    console,
    err_console,
    open_registry,
    settings_for,
)
from keel.verification import VerificationReport
from keel.verification import verify as verify_version


def verify(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION, NAME@ALIAS or NAME@latest.")],
    registry: RegistryOption = None,
) -> None:
    """Check hashes, reload the model and reproduce its golden outputs within tolerance."""
    settings = settings_for(registry)
    store = open_registry(settings)
    meta = store.resolve(ref)
    total = sum(d.size for d in meta.files.values())
    with byte_progress("verifying hashes", total) as progress:
        report = verify_version(store, meta, settings.runtime, progress)
    console.print(_table(report))
    env = report.environment
    if env.has_critical:
        changes = [f"{p.name} {p.recorded or '-'} → {p.current or '-'}" for p in env.critical]
        if env.python_differs:
            changes.insert(0, f"python {env.python_recorded} → {env.python_current}")
        names = ", ".join(changes)
        err_console.print(f"[yellow]warning:[/] critical libraries differ from training: {names}")
    if not report.ok:
        err_console.print(
            f"[bold red]FAILED[/] {meta.ref}: " + "; ".join(report.problems()), highlight=False
        )
        raise typer.Exit(1)
    console.print(f"[green]OK[/] {meta.ref} verified")


def _table(report: VerificationReport) -> Table:
    table = Table(title=f"verify {report.metadata.ref}")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    files = ", ".join(report.metadata.files)
    if report.load_error:
        # Details as Text, not markup: a refusal may quote brackets.
        table.add_row("hashes + load", "[red]fail", Text(report.load_error))
    else:
        table.add_row("hashes", "[green]ok", Text(files))
        table.add_row("load", "[green]ok", Text(report.metadata.artifact.format))
    for check in report.golden.checks if report.golden else ():
        diff = "" if check.max_abs_diff is None else f"max abs diff {check.max_abs_diff:.3g}; "
        table.add_row(
            f"golden {check.name}",
            "[green]ok" if check.ok else "[red]fail",
            Text(
                f"{diff}{check.total - check.mismatched}/{check.total} values within tolerance"
                if check.ok
                else check.detail
            ),
        )
    return table
