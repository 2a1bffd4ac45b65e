"""``keel publish``: store a model file as a new, immutable registry version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from keel.cli.context import RegistryOption, byte_progress, console, open_registry, settings_for
from keel.errors import InvalidConfig, KeelError
from keel.publishing import publish as publish_model
from keel.records import read_records
from keel.signature import Signature


def publish(
    artifact: Annotated[
        Path, typer.Argument(help="Model file: ONNX or safetensors (pickle is refused).")
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name in the registry.")],
    signature: Annotated[
        Path, typer.Option("--signature", "-s", help="Signature JSON: features and outputs.")
    ],
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="Reference data (.csv, .json, .jsonl), e.g. the validation set: gives the "
            "reference statistics and golden examples.",
        ),
    ] = None,
    golden: Annotated[
        Path | None,
        typer.Option("--golden", help="Golden input records (default: rows of --reference)."),
    ] = None,
    alias: Annotated[
        str | None, typer.Option("--alias", "-a", help="Point this alias at the new version.")
    ] = None,
    forward: Annotated[
        str | None,
        typer.Option(
            "--forward",
            help="Forward implementation for safetensors: numpy-mlp, torch-mlp (a PyTorch "
            "MLP's state_dict as saved) or an installed one; see docs/forwards.md.",
        ),
    ] = None,
    forward_config: Annotated[
        str | None, typer.Option("--forward-config", help="JSON object for the forward.")
    ] = None,
    critical: Annotated[
        list[str] | None,
        typer.Option("--critical", help="Extra package whose version affects numerics (repeat)."),
    ] = None,
    description: Annotated[str, typer.Option("--description", help="Free text.")] = "",
    source_dir: Annotated[
        Path, typer.Option("--source-dir", help="Folder in the git repo of the training code.")
    ] = Path(),
    allow_untracked: Annotated[
        bool,
        typer.Option("--allow-untracked", help="Publish even when the code is not in git."),
    ] = False,
    registry: RegistryOption = None,
) -> None:
    """Publish a model file with its signature, environment, reference stats and golden set."""
    settings = settings_for(registry)
    _must_exist(
        ("model file", artifact), ("--signature", signature),
        ("--reference", reference), ("--golden", golden),
    )  # fmt: skip
    sig = Signature.from_file(signature)
    with byte_progress(f"storing {artifact.name}", _size(artifact)) as progress:
        meta = publish_model(
            artifact,
            name=name,
            signature=sig,
            registry=open_registry(settings, must_exist=False),  # the first publish makes it
            reference=read_records(reference, sig) if reference else None,
            golden=read_records(golden, sig) if golden else None,
            alias=alias,
            forward=forward,
            forward_config=_json_object(forward_config) if forward_config else None,
            critical_packages=critical or [],
            description=description,
            source_dir=source_dir,
            allow_untracked=allow_untracked,
            runtime_settings=settings.runtime,
            progress=progress,
        )
    where = f" as {alias}" if alias else ""
    console.print(f"published {meta.ref}{where}")


def _must_exist(*given: tuple[str, Path | None]) -> None:
    """Refuse, as a wrong argument, every path given that names nothing, all at once."""
    missing = [
        f"{what} {path} does not exist" for what, path in given if path and not path.exists()
    ]
    if missing:
        raise InvalidConfig("; ".join(missing))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise KeelError(f"cannot read {path}: {exc.strerror}") from exc


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeelError(f"--forward-config is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise KeelError("--forward-config must be a JSON object")
    return value
