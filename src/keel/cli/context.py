"""What every command shares: settings from the edge, the registry, console and progress."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from keel.configuration import load_settings
from keel.errors import RegistryNotFound
from keel.registry import Registry
from keel.registry.storage import Progress as ProgressCallback
from keel.settings import Settings

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

RegistryOption = Annotated[
    str | None,
    typer.Option(
        "--registry",
        "-r",
        help="Registry folder or fsspec URL. Default: $KEEL_REGISTRY, else ./registry.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

# Below this many bytes hashing or copying takes well under a second on any
# disk, and a bar that flashes by is noise.
PROGRESS_THRESHOLD = 64 * 1024 * 1024


def settings_for(registry: str | None, config_file: Path | None = None) -> Settings:
    """Settings from the environment (and a config file), a ``--registry`` flag winning."""
    settings = load_settings(config_file)
    if registry is not None:
        settings = settings.model_copy(update={"registry": registry})
    return settings


def open_registry(settings: Settings, *, must_exist: bool = True) -> Registry:
    """The settings' registry; a local folder must exist unless ``must_exist`` is False.

    Reading a folder that is not there would list no models: a mistyped
    ``--registry`` must be an error naming the path, not an empty registry.
    """
    cache = Path(settings.cache_dir) if settings.cache_dir else None
    registry = Registry(settings.registry, cache_dir=cache)
    if must_exist and registry.storage.is_local and not registry.storage.exists(""):
        raise RegistryNotFound(
            f"registry folder {registry.storage.root} does not exist: name the right one "
            "with --registry or KEEL_REGISTRY, or publish a model into it first"
        )
    return registry


@contextlib.contextmanager
def byte_progress(description: str, total: int) -> Iterator[ProgressCallback | None]:
    """A progress bar over ``total`` bytes on stderr, or no bar for small amounts."""
    if total < PROGRESS_THRESHOLD or not err_console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.advance(task, done)
