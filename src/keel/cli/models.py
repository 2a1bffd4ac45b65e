"""``keel models list`` and ``keel models show``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from keel.cli.context import JsonOption, RegistryOption, console, open_registry, settings_for
from keel.registry import ModelMetadata

app = typer.Typer(help="List and inspect published models.", no_args_is_help=True)


@app.command("list")
def list_models(registry: RegistryOption = None, as_json: JsonOption = False) -> None:
    """List every model with its versions and aliases."""
    store = open_registry(settings_for(registry))
    listing = [(name, store.versions(name), store.aliases(name)) for name in store.models()]
    if as_json:
        entries = [{"name": n, "versions": v, "aliases": a} for n, v, a in listing]
        print(json.dumps(entries, indent=2))
        return
    if not listing:
        console.print(f"No models in {store.url}.")
        return
    table = Table(title=f"Models in {store.url}")
    for column in ("model", "versions", "latest", "aliases"):
        table.add_column(column)
    for name, versions, aliases in listing:
        moved = ", ".join(f"{a} → {v}" for a, v in sorted(aliases.items()))
        table.add_row(name, str(len(versions)), versions[-1], moved)
    console.print(table)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS, NAME@latest or NAME@SHA/TIME.")],
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one version's metadata: source, files, signature, environment, metrics."""
    store = open_registry(settings_for(registry))
    meta = store.resolve(ref)
    if as_json:
        print(meta.model_dump_json(indent=2))
        return
    aliases = [a for a, v in store.aliases(meta.name).items() if v == meta.version]
    console.print(_summary(meta, aliases))
    console.print(_features(meta))


def _summary(meta: ModelMetadata, aliases: list[str]) -> Table:
    table = Table(title=meta.ref, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    dirty = " (dirty tree)" if meta.source.git_dirty else ""
    rows = [
        ("aliases", ", ".join(sorted(aliases)) or "-"),
        ("created", meta.created_at.isoformat()),
        ("git sha", meta.source.git_sha + dirty),
        (
            "format",
            meta.artifact.format + (f" ({meta.artifact.forward})" if meta.artifact.forward else ""),
        ),
        ("python", f"{meta.environment.python} on {meta.environment.platform}"),
        (
            "golden examples",
            f"{len(meta.golden.inputs)} (atol {meta.golden.atol}, rtol {meta.golden.rtol})",
        ),
        ("reference rows", str(meta.reference.rows) if meta.reference else "none"),
        ("metrics", ", ".join(f"{k}={v:.4g}" for k, v in meta.training.metrics.items()) or "-"),
    ]
    rows += [
        (f"file {n}", f"{d.size} bytes, sha256 {d.sha256[:16]}…") for n, d in meta.files.items()
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _features(meta: ModelMetadata) -> Table:
    table = Table(title="Signature")
    for column in ("feature", "dtype", "range / levels", "nullable", "missing"):
        table.add_column(column)
    for f in meta.signature.features:
        if f.levels:
            span = ", ".join(f.levels)
        else:
            span = (
                f"[{_bound(f.minimum)}, {_bound(f.maximum)}]" if f.dtype in ("float", "int") else ""
            )
        table.add_row(f.name, f.dtype, span, "yes" if f.nullable else "no", f.missing)
    for o in meta.signature.outputs:
        table.add_row(f"→ {o.name}", o.dtype, o.kind, str(o.shape), "")
    return table


def _bound(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
