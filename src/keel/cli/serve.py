"""``keel serve``: serve models from the registry over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from pydantic import ValidationError

from keel import tracing
from keel.cli.context import RegistryOption, open_registry, settings_for
from keel.configuration import describe_errors
from keel.errors import InvalidConfig
from keel.logstore.opening import check_log_store_url
from keel.registry import parse_ref
from keel.serving.protocols.paths import match
from keel.settings import ServerSettings, Settings, ShadowSettings, ShadowTarget


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
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port (default 8080).")
    ] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            "--grpc-port",
            min=0,
            max=65535,
            help="Port of the gRPC service (default 8081; 0 = no gRPC).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers",
            "-w",
            help="Worker processes on the one port: a number, or 'auto' for the CPUs this "
            "container may use (default 1).",
            show_default=False,
        ),
    ] = None,
    shadow: Annotated[
        list[str] | None,
        typer.Option(
            "--shadow",
            help="Mirror a served model's traffic to this registry version, run in-process "
            "(NAME@ALIAS or NAME@VERSION; NAME is the served model). Repeat for more models.",
            show_default=False,
        ),
    ] = None,
    shadow_url: Annotated[
        list[str] | None,
        typer.Option(
            "--shadow-url",
            help="Mirror traffic to a remote Open Inference Protocol model: "
            "[MODEL=]http://HOST:PORT/v2/models/NAME[/versions/V] (MODEL= may be left out "
            "when one model is served).",
            show_default=False,
        ),
    ] = None,
    log_store: Annotated[
        str | None,
        typer.Option(
            "--log-store",
            help="Prediction log of the shadow comparisons: sqlite:///PATH (default "
            "sqlite:///keel-predictions.sqlite) or postgresql://USER@HOST/DB.",
            show_default=False,
        ),
    ] = None,
    strict_env: Annotated[
        bool,
        typer.Option(
            "--strict-env",
            help="Refuse a version whose critical libraries differ from its training environment.",
        ),
    ] = False,
) -> None:
    """Serve models over the Open Inference Protocol (v2: REST and gRPC) and the JSON records API.

    A model, alias or version the registry does not hold stops it at once, naming
    what the registry holds; a registry that cannot be read yet is retried.

    Traces: set OTEL_EXPORTER_OTLP_ENDPOINT (and OpenTelemetry's other OTEL_*
    variables) to send OpenTelemetry traces over OTLP; see docs/monitoring.md.
    """
    from keel.serving.model_manager import check_held
    from keel.web.supervisor import serve_workers

    # OpenTelemetry's OTEL_* variables: a mistake in them stops the server here, named.
    tracing.settings_from()
    settings = settings_for(registry, config)
    overrides: dict[str, object] = {
        k: v
        for k, v in (("host", host), ("port", port), ("grpc_port", grpc_port), ("workers", workers))
        if v is not None
    }
    if strict_env:
        overrides["strict_env"] = True
    if overrides:
        settings = with_server(settings, overrides)
    models = [*settings.models, *(refs or [])]
    if not models:
        raise InvalidConfig(
            "name at least one model to serve, e.g. keel serve churn@production "
            "(or models = [...] in --config, or KEEL_MODELS)"
        )
    served = sorted({parse_ref(ref).name for ref in models})
    settings = with_shadow(settings, served, shadow or [], shadow_url or [], log_store)
    # A folder that is not there yet is retried (a volume mounted late), not refused.
    store = open_registry(settings, must_exist=False)
    candidates = [t.candidate for t in settings.shadow.targets if t.candidate]
    check_held(store, [*models, *candidates])
    serve_workers(models, settings, store)


def with_server(settings: Settings, overrides: dict[str, object]) -> Settings:
    """``settings`` with the command line's server flags, checked as the file's are."""
    try:
        server = ServerSettings.model_validate({**settings.server.model_dump(), **overrides})
    except ValidationError as exc:
        raise InvalidConfig(f"invalid server settings: {describe_errors(exc)}") from None
    return settings.model_copy(update={"server": server})


def with_shadow(
    settings: Settings,
    served: list[str],
    candidates: list[str],
    urls: list[str],
    log_store: str | None,
) -> Settings:
    """``settings`` with the command line's shadow candidates and log store added."""
    targets = list(settings.shadow.targets)
    try:
        for ref in candidates:
            targets.append(ShadowTarget(model=parse_ref(ref).name, candidate=ref))
        for given in urls:
            model, _, url = (
                given.partition("=") if "=" in given.split("://")[0] else ("", "", given)
            )
            if not model:
                if len(served) != 1:
                    raise InvalidConfig(
                        f"--shadow-url {given}: several models are served ({', '.join(served)}); "
                        "say which one with MODEL=URL"
                    )
                model = served[0]
            if not url:
                raise InvalidConfig(f"--shadow-url {given!r} names no URL: {SHADOW_URL_FORM}")
            targets.append(ShadowTarget(model=model, url=url))
    except ValidationError as exc:
        raise InvalidConfig(f"shadow settings are invalid: {describe_errors(exc)}") from None
    for target in targets:
        if target.model not in served:
            raise InvalidConfig(
                f"shadow candidate for '{target.model}': that model is not served "
                f"(served: {', '.join(served)})"
            )
        if target.url:
            check_shadow_url(target.url)
    update: dict[str, object] = {}
    if targets:
        update["targets"] = targets
    if log_store is not None:
        check_log_store_url(log_store)
        update["log"] = settings.shadow.log.model_copy(update={"url": log_store})
    if not update:
        return settings
    try:
        shadow = ShadowSettings.model_validate({**settings.shadow.model_dump(), **update})
    except ValidationError as exc:
        raise InvalidConfig(f"shadow settings are invalid: {describe_errors(exc)}") from None
    return settings.model_copy(update={"shadow": shadow})


SHADOW_URL_FORM = "write [MODEL=]http://HOST:PORT/v2/models/NAME[/versions/VERSION]"


def check_shadow_url(url: str) -> None:
    """Refuse a remote candidate's URL the mirror could not call, before anything loads.

    The model's base URL is wanted, as in the server's model metadata; the mirror
    adds ``/infer`` itself.
    """
    parts = urlsplit(url.rstrip("/"))
    route = match(f"{parts.path}/infer")
    if parts.scheme in ("http", "https") and parts.netloc and route and route[0] == "v2_infer":
        return
    hint = ""
    if parts.path.rstrip("/").endswith("/infer"):
        hint = f" (leave out /infer: {url.rstrip('/').removesuffix('/infer')})"
    raise InvalidConfig(f"shadow URL {url!r} is not a v2 model's URL{hint}; {SHADOW_URL_FORM}")
