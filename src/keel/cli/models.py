"""``keel models list``, ``keel models versions`` and ``keel models show``.

Tables show a version by its short id (unique within the model, never cut by
Rich); ``--json`` keeps the full ``sha/timestamp``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli.context import JsonOption, RegistryOption, console, open_registry, settings_for
from keel.errors import ModelNotFound
from keel.registry import ModelMetadata, Registry

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
    table = Table(title=escape(f"Models in {store.url}"))
    table.add_column("model", overflow="fold")
    table.add_column("versions")
    _version_column(table, "latest")
    table.add_column("aliases", overflow="fold")
    for name, versions, aliases in listing:
        ids = store.short_ids(name)
        moved = "\n".join(f"{a} → {ids.get(v, v)}" for a, v in sorted(aliases.items()))
        table.add_row(name, str(len(versions)), ids[versions[-1]], escape(moved))
    console.print(table)


@app.command("versions")
def versions(
    name: Annotated[str, typer.Argument(help="Model name.")],
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every version of a model, newest first: short id, creation time, git sha, aliases."""
    store = open_registry(settings_for(registry))
    listed = _listed_versions(store, name)
    if as_json:
        print(json.dumps([row.to_json() for row in listed], indent=2))
        return
    table = Table(title=escape(f"Versions of {name} in {store.url}"))
    _version_column(table, "id")
    for column in ("created (UTC)", "git sha", "dirty", "aliases"):
        table.add_column(column, overflow="fold")
    for row in listed:
        table.add_row(
            row.short_id,
            row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            row.git_sha[:10],
            "yes" if row.git_dirty else "no",
            ", ".join(row.aliases),
        )
    console.print(table)


@dataclass(frozen=True)
class ListedVersion:
    """One line of ``keel models versions``."""

    short_id: str
    version: str
    created_at: datetime
    git_sha: str
    git_dirty: bool
    aliases: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.short_id,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "git_sha": self.git_sha,
            "git_dirty": self.git_dirty,
            "aliases": self.aliases,
        }


def _listed_versions(store: Registry, name: str) -> list[ListedVersion]:
    """Every version of ``name``, newest first, with the aliases that point at it."""
    versions = store.versions(name)
    if not versions:
        raise ModelNotFound(f"model {name!r} has no published version in {store.url}")
    ids = store.short_ids(name)
    aliases = store.aliases(name)
    listed = []
    for version in reversed(versions):
        meta = store.metadata(name, version)
        listed.append(
            ListedVersion(
                short_id=ids[version],
                version=version,
                created_at=meta.created_at,
                git_sha=meta.source.git_sha,
                git_dirty=meta.source.git_dirty,
                aliases=sorted(a for a, v in aliases.items() if v == version),
            )
        )
    return listed


def _version_column(table: Table, header: str) -> None:
    # Short ids are short, but a very narrow terminal must wrap one, not cut it to "…".
    table.add_column(header, overflow="fold", min_width=7)


@app.command("show")
def show(
    ref: Annotated[
        str, typer.Argument(help="NAME, NAME@ALIAS, NAME@latest, NAME@ID or NAME@SHA/TIME.")
    ],
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
    short_id = store.short_ids(meta.name)[meta.version]
    console.print(_summary(meta, short_id, aliases))
    console.print(_features(meta))


def _summary(meta: ModelMetadata, short_id: str, aliases: list[str]) -> Table:
    table = Table(title=escape(f"{meta.name}@{short_id}"), show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    dirty = " (dirty tree)" if meta.source.git_dirty else ""
    rows = [
        ("id", short_id),
        ("version", meta.version),
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
