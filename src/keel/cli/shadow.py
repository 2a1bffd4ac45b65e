"""``keel shadow report``: how a shadow candidate compares with production, from the log."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli.context import (
    JsonOption,
    RegistryOption,
    console,
    err_console,
    open_registry,
    settings_for,
)
from keel.errors import KeelError, ModelNotFound, RegistryError
from keel.logstore.opening import open_log_store
from keel.logstore.records import CandidateInfo, PredictionRecord
from keel.logstore.sqlite_store import SQLiteStore
from keel.registry import Registry
from keel.settings import Settings
from keel.shadow.display import number, percent
from keel.shadow.promotion import Verdict, judge
from keel.shadow.report import (
    DEFAULT_TOP,
    ShadowReport,
    build_report,
    model_records,
    select_candidate,
)
from keel.shadow.report_html import render_html
from keel.signature import Output

app = typer.Typer(
    help="Read the shadow log: how a candidate answered production's traffic.",
    no_args_is_help=True,
)

CandidateOption = Annotated[
    str | None,
    typer.Option(
        "--candidate",
        help="Candidate version (or a unique prefix). Default: the latest records' candidate.",
        show_default=False,
    ),
]
LogStoreOption = Annotated[
    str | None,
    typer.Option(
        "--log-store",
        help="Prediction log URL (sqlite:///PATH or postgresql://...). "
        "Default: the shadow.log.url setting ($KEEL_SHADOW__LOG__URL).",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (promotion criteria, log URL)."),
]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class ShadowLog:
    """What the prediction log holds for one model."""

    records: list[PredictionRecord]
    candidates: list[CandidateInfo]


@app.command("report")
def report(
    name: Annotated[str, typer.Argument(help="Model name (the primary's).")],
    candidate: CandidateOption = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only records from this time: ISO 8601 (UTC unless it says) or a duration "
            "back from now, like 30m, 24h, 7d.",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", help="Only records before this time (as --since).", show_default=False
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="Disagreements to list.")] = DEFAULT_TOP,
    as_json: JsonOption = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the report as one self-contained HTML file."),
    ] = None,
    log_store: LogStoreOption = None,
    registry: RegistryOption = None,
    config: ConfigOption = None,
) -> None:
    """Counts, rates, agreement, output shift, latency and the largest disagreements.

    Output kinds come from the candidate's signature when the registry holds it,
    else from the outputs' dtypes.
    """
    settings = settings_for(registry, config)
    now = time.time()
    window = (
        None if since is None else parse_moment(since, now, "--since"),
        None if until is None else parse_moment(until, now, "--until"),
    )
    log = read_log(settings, name, log_store, *window)
    version = select_candidate(model_records(log.records, name), candidate)
    outputs = _outputs_if_published(settings, name, version)
    shadow = build_report(
        log.records,
        log.candidates,
        outputs,
        model=name,
        candidate_version=version,
        top=top,
        score_tolerance=settings.shadow.promotion.score_tolerance,
    )
    verdict = judge(shadow, settings.shadow.promotion)
    if html is not None:
        html.write_text(render_html(shadow, verdict), encoding="utf-8")
        err_console.print(f"wrote {escape(str(html))}", highlight=False)
    if as_json:
        print(json.dumps(shadow.to_dict(), indent=2, allow_nan=False))
        return
    print_report(shadow)
    print_verdict(verdict)


def parse_moment(text: str, now: float, option: str) -> float:
    """Unix time of ``text``: ISO 8601 (naive means UTC) or a duration back from ``now``."""
    spec = text.strip()
    if match := _DURATION.fullmatch(spec):
        return now - float(match[1]) * _SECONDS[match[2]]
    try:
        moment = datetime.fromisoformat(spec)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an ISO 8601 time (2025-03-01T12:00:00Z) nor a duration "
            "(90s, 30m, 24h, 7d, 2w)",
            param_hint=option,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_log(
    settings: Settings,
    name: str,
    url: str | None,
    since: float | None = None,
    until: float | None = None,
) -> ShadowLog:
    """Every record of ``name`` in the window, and the candidates started for it."""
    store = open_log_store(url or settings.shadow.log.url)
    try:
        # Opening a SQLite store creates the file: a mistyped path would read as an
        # empty log instead of the mistake it is.
        if isinstance(store, SQLiteStore) and not store.path.is_file():
            raise KeelError(f"prediction log {store.path} does not exist")
        return ShadowLog(store.read(name, since=since, until=until), store.candidates(name))
    finally:
        store.close()


def registry_version(registry: Registry, name: str, logged: str) -> str:
    """The registry version a logged candidate version names.

    Servers log a version as one path segment, ``sha-timestamp`` (see
    ``keel.serving.served_version.version_label``); the registry writes ``sha/timestamp``.
    """
    for version in registry.versions(name):
        if logged in (version, version.replace("/", "-", 1)):
            return version
    raise ModelNotFound(
        f"candidate {logged} of {name} is not a version in the registry {registry.url}; "
        "a remote candidate must be published there before it can be promoted"
    )


def _outputs_if_published(settings: Settings, name: str, logged: str) -> Sequence[Output] | None:
    """The candidate's signature outputs, or None (then dtypes decide) if it is not published."""
    try:
        store = open_registry(settings)
        return store.metadata(name, registry_version(store, name, logged)).signature.outputs
    except (ModelNotFound, RegistryError):
        err_console.print(
            f"note: {escape(name)} {escape(logged)} is not in the registry "
            f"{escape(settings.registry)}; output kinds are inferred from their dtypes",
            highlight=False,
        )
        return None


def print_report(shadow: ShadowReport) -> None:
    """The report as Rich tables: summary, outputs, largest disagreements."""
    document = shadow.to_dict()
    requests, rates, latency = document["requests"], document["rates"], document["latency_ms"]
    summary = Table(
        title=escape(
            f"Shadow report of {shadow.model}: candidate {shadow.candidate_version} "
            f"against {', '.join(shadow.primary_versions)}"
        )
    )
    summary.add_column("")
    summary.add_column("value", justify="right")
    rss = shadow.candidate_rss_bytes
    for label, value in (
        ("span", f"{document['from']} to {document['to']} ({shadow.duration_s / 3600:.2f} h)"),
        ("requests logged", str(requests["logged"])),
        (
            "mirrored: ok / error / timeout",
            f"{requests['mirrored']}: {requests['ok']} / "
            f"{requests['error']} / {requests['timeout']}",
        ),
        ("dropped / unmirrored", f"{requests['dropped']} / {requests['unmirrored']}"),
        ("error / timeout / drop rate", " / ".join(percent(rates[k]) for k in rates)),
        ("agreement", percent(shadow.agreement)),
        ("latency p50 / p99, primary", _pair(latency["primary"])),
        ("latency p50 / p99, candidate", _pair(latency["candidate"])),
        ("candidate memory", "-" if rss is None else f"{rss / 2**20:.1f} MiB"),
    ):
        summary.add_row(label, escape(value))
    console.print(summary)
    _print_outputs(document["outputs"])
    _print_disagreements(document["disagreements"])


def print_verdict(verdict: Verdict, title: str = "Promotion criteria") -> None:
    """Each criterion with its required and measured value, and pass or FAIL."""
    table = Table(title=title)
    for heading in ("criterion", "required", "measured", ""):
        table.add_column(heading, justify="left" if heading == "criterion" else "right")
    for criterion in verdict.criteria:
        sign = ">=" if criterion.bound == "min" else "<="
        table.add_row(
            criterion.name,
            f"{sign} {number(criterion.required)} {criterion.unit}".rstrip(),
            f"{number(criterion.measured)} {criterion.unit}".rstrip(),
            "[green]pass[/]" if criterion.passed else "[bold red]FAIL[/]",
        )
    console.print(table)


def _print_outputs(outputs: dict[str, dict[str, object]]) -> None:
    if not outputs:
        console.print("no request was answered by the candidate: nothing to compare")
        return
    table = Table(title="Outputs, over the requests both answered")
    headings = ("output", "kind", "rows", "agreement", "mean |diff|", "p99 |diff|", "corr", "PSI")
    for heading in headings:
        if heading in ("output", "kind"):
            table.add_column(heading, overflow="fold")
        else:
            table.add_column(heading, justify="right")
    for output_name, entry in outputs.items():
        if "problem" in entry:
            table.add_row(
                escape(output_name), str(entry["kind"]), "0", escape(str(entry["problem"]))
            )
            continue
        correlation = entry.get("correlation")
        table.add_row(
            escape(output_name),
            str(entry["kind"]),
            str(entry["rows"]),
            percent(_float(entry.get("agreement"))),
            number(_float(entry.get("mean_abs_diff"))),
            number(_float(entry.get("p99_abs_diff"))),
            ", ".join(number(c) for c in correlation) if isinstance(correlation, list) else "-",
            number(_float(entry.get("psi"))),
        )
    console.print(table)


def _print_disagreements(disagreements: list[dict[str, object]]) -> None:
    if not disagreements:
        return
    table = Table(title=f"Largest disagreements ({len(disagreements)})")
    for heading in ("request", "row", "time", "difference", "primary → candidate"):
        table.add_column(heading)
    for item in disagreements:
        outputs = item["outputs"]
        assert isinstance(outputs, dict)
        shown = "; ".join(
            f"{n}: {_short(v['primary'])} → {_short(v['candidate'])}" for n, v in outputs.items()
        )
        table.add_row(
            escape(str(item["request_id"])),
            str(item["row"]),
            str(item["at"]),
            number(_float(item["difference"])),
            escape(shown),
        )
    console.print(table)


def _pair(percentiles: dict[str, float | None]) -> str:
    return f"{number(percentiles['p50'])} / {number(percentiles['p99'])} ms"


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _short(value: object) -> str:
    if isinstance(value, float):
        return number(value)
    if isinstance(value, list):
        text = "[" + ", ".join(_short(v) for v in value) + "]"
        return text if len(text) <= 60 else text[:59] + "…"
    return str(value)
