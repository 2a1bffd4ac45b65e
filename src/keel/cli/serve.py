"""``keel serve``: serve models from the registry over HTTP."""

from __future__ import annotations

from typing import Annotated

import typer

from keel.cli.context import RegistryOption, open_registry, settings_for
from keel.registry import parse_ref


def serve(
    refs: Annotated[list[str], typer.Argument(help="Models to serve: NAME@ALIAS or NAME@VERSION.")],
    registry: RegistryOption = None,
    host: Annotated[str | None, typer.Option("--host", help="Address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 8080).")] = None,
) -> None:
    """Serve models over the Open Inference Protocol (v2) and the JSON records API."""
    from keel.serving.server import serve as run_server

    settings = settings_for(registry)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if overrides:
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update=overrides)}
        )
    for ref in refs:
        parse_ref(ref)
    run_server(refs, settings, open_registry(settings))
