"""``keel serve``: serve models from the registry over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keel.cli.context import RegistryOption, open_registry, settings_for
from keel.errors import KeelError
from keel.registry import parse_ref


def serve(
    refs: Annotated[
        list[str] | None,
        typer.Argument(help="Models to serve: NAME@ALIAS or NAME@VERSION.", show_default=False),
    ] = None,
    registry: RegistryOption = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file of settings and models to serve."),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 8080).")] = None,
    strict_env: Annotated[
        bool,
        typer.Option(
            "--strict-env",
            help="Refuse a version whose critical libraries differ from its training environment.",
        ),
    ] = False,
) -> None:
    """Serve models over the Open Inference Protocol (v2) and the JSON records API."""
    from keel.serving.server import serve as run_server

    settings = settings_for(registry, config)
    overrides: dict[str, object] = {
        k: v for k, v in (("host", host), ("port", port)) if v is not None
    }
    if strict_env:
        overrides["strict_env"] = True
    if overrides:
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update=overrides)}
        )
    models = [*settings.models, *(refs or [])]
    if not models:
        raise KeelError("name at least one model to serve, e.g. keel serve churn@production")
    for ref in models:
        parse_ref(ref)
    run_server(models, settings, open_registry(settings))
