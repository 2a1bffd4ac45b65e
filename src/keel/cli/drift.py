"""``keel drift report``: a running server's drift window for one model, worst column first."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli.context import JsonOption, console
from keel.errors import ModelNotFound, NotMonitored, ServerUnreachable
from keel.monitoring.snapshot import DriftSnapshot, PredictionDrift, worst_first

app = typer.Typer(help="Read drift, null rates and collapse from a running server.")

STATUS = {0: "ok", 1: "[yellow]warn[/]", 2: "[bold red]ALERT[/]"}


@app.command("report")
def report(
    ref: Annotated[
        str, typer.Argument(help="NAME, or NAME@VERSION where VERSION is an alias or a version.")
    ],
    url: Annotated[
        str, typer.Option("--url", help="Base URL of the keel server.")
    ] = "http://127.0.0.1:8080",
    as_json: JsonOption = False,
) -> None:
    """Per-feature drift, null rates and prediction drift of the server's current window."""
    snapshot = DriftSnapshot.model_validate(_fetch(url, ref))
    if as_json:
        print(json.dumps(snapshot.model_dump(mode="json"), indent=2))
        return
    window = f"{snapshot.rows} rows in the window ({snapshot.observed} observed)"
    if snapshot.insufficient:
        window += f"; nothing is judged below {snapshot.min_rows} rows"
    # Names are data, not markup: "probabilities[benign]" must print as it is.
    table = Table(title=escape(f"Drift of {snapshot.model} {snapshot.version}: {window}"))
    for heading in ("column", "status", "PSI", "noise", "test", "p-value", "null rate", "flags"):
        table.add_column(heading, justify="left" if heading in ("column", "flags") else "right")
    for column in worst_first(snapshot):
        flags = []
        if isinstance(column, PredictionDrift):
            flags += ["collapsed"] if column.collapsed else []
        elif column.null_spike:
            flags.append("null spike")
        flags += column.reasons
        table.add_row(
            escape(f"{column.name} ({column.role})"),
            STATUS[column.status],
            _number(column.psi),
            _number(column.psi_noise),
            f"{column.test} {_number(column.statistic)}" if column.test else "-",
            _number(column.p_value, "{:.2g}"),
            f"{_number(column.null_rate, '{:.1%}')} (ref {column.reference_null_rate:.1%})",
            escape("; ".join(flags)),
        )
    console.print(table)


def _fetch(base: str, ref: str) -> object:
    name, _, version = ref.partition("@")
    quoted = urllib.parse.quote(name, safe="")
    path = f"/v2/models/{quoted}/drift"
    if version:
        path = f"/v2/models/{quoted}/versions/{urllib.parse.quote(version, safe='')}/drift"
    try:
        with urllib.request.urlopen(base.rstrip("/") + path, timeout=10) as answer:  # noqa: S310 - the user's server URL
            return json.load(answer)
    except urllib.error.HTTPError as exc:
        message = _error_of(exc)
        if exc.code == 404:
            kind = NotMonitored if "reference" in message else ModelNotFound
            raise kind(message) from None
        raise ServerUnreachable(
            f"{base} answered {exc.code}: {message} (is --url the keel server you meant?)"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise ServerUnreachable(
            f"cannot read the drift window from {base}: {reason}; is a keel server running "
            "there? Name the server with --url http://HOST:PORT"
        ) from None


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(exc)["error"])
    except (ValueError, KeyError, TypeError):
        return exc.reason or "no detail"


def _number(value: float | None, form: str = "{:.3f}") -> str:
    return "-" if value is None else form.format(value)
