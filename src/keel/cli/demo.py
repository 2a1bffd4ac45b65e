"""``keel demo``: train and publish the example models, then verify them."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from keel.cli.context import RegistryOption, console, open_registry, settings_for
from keel.errors import KeelError
from keel.registry import ModelMetadata, Registry
from keel.settings import Settings, ShadowTarget
from keel.verification import verify


def demo(
    registry: RegistryOption = None,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Stop after publishing and verifying; do not serve.")
    ] = False,
) -> None:
    """Train the example models on scikit-learn's bundled data, publish, verify and serve them.

    Models already in the registry are kept, not retrained.
    """
    settings = settings_for(registry)
    store = open_registry(settings, must_exist=False)  # the demo publishes into it
    for model, alias, train in _examples():
        if alias in store.aliases(model):
            console.print(f"{model}@{alias} is already published; keeping it")
            continue
        console.print(f"training {model} ({alias})…")
        meta = train(store)
        console.print(
            f"published {meta.ref} as {alias}: "
            + ", ".join(f"{k}={v:.3f}" for k, v in meta.training.metrics.items())
        )
    table = Table(title=f"verified in {store.url}")
    for column in ("model", "alias", "id", "golden", "result"):
        table.add_column(column)
    failed = []
    for model, alias, _ in _examples():
        meta = store.resolve(f"{model}@{alias}")
        report = verify(store, meta, settings.runtime)
        outputs = len(report.golden.checks) if report.golden else 0
        table.add_row(
            model,
            alias,
            # The short id: every version of one commit shares the sha Rich would cut to.
            store.short_ids(model)[meta.version],
            f"{len(meta.golden.inputs)} rows × {outputs} outputs",
            # Text, not markup: a problem may quote brackets.
            Text("ok", style="green")
            if report.ok
            else Text("; ".join(report.problems()), style="red"),
        )
        if not report.ok:
            failed.append(meta.ref)
    console.print(table)
    if failed:
        raise KeelError(f"verification failed for {', '.join(failed)}")
    if no_serve:
        return
    from keel.web.server import serve

    refs = [f"{model}@{alias}" for model, alias, _ in _examples()]
    settings = _with_demo_shadow(settings)
    console.print(
        f"serving {', '.join(refs)} on http://{settings.server.host}:{settings.server.port} "
        "(Open Inference Protocol under /v2, JSON records under /v1; Ctrl+C stops)"
    )
    for target in settings.shadow.targets:
        console.print(
            f"{target.model}@production's traffic is mirrored to {target.candidate} in shadow, "
            f"logged to {settings.shadow.log.url}: see `keel shadow report {target.model}`"
        )
    serve(refs, settings, store)


def _with_demo_shadow(settings: Settings) -> Settings:
    """The demo runs breast-cancer's candidate in shadow, unless shadow targets are configured."""
    from keel.examples import breast_cancer

    if settings.shadow.targets:
        return settings
    target = ShadowTarget(
        model=breast_cancer.MODEL_NAME, candidate=f"{breast_cancer.MODEL_NAME}@candidate"
    )
    shadow = settings.shadow.model_copy(update={"targets": [target]})
    return settings.model_copy(update={"shadow": shadow})


def _examples() -> list[tuple[str, str, Callable[[Registry], ModelMetadata]]]:
    missing = [m for m in ("sklearn", "skl2onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise KeelError(
            f"the examples need scikit-learn and skl2onnx ({', '.join(missing)} not installed): "
            "install keel[examples]"
        )
    from keel.examples import breast_cancer, digits_mlp

    source = Path(breast_cancer.__file__).parent
    return [
        *(
            (
                breast_cancer.MODEL_NAME,
                v.alias,
                lambda r, v=v: breast_cancer.publish_variant(v, r, source),
            )
            for v in breast_cancer.VARIANTS
        ),
        (digits_mlp.MODEL_NAME, "production", lambda r: digits_mlp.publish_model(r, source)),
    ]
