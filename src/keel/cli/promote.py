"""``keel promote``: move ``production`` to the shadow candidate, if the evidence says so."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from keel.cli.context import RegistryOption, console, err_console, open_registry, settings_for
from keel.cli.shadow import (
    CandidateOption,
    ConfigOption,
    LogStoreOption,
    print_verdict,
    read_log,
    registry_version,
)
from keel.errors import PromotionRefused
from keel.shadow.promotion import judge, promotion_reason
from keel.shadow.report import build_report, model_records, select_candidate

PRODUCTION = "production"


def promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    candidate: CandidateOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Promote even if criteria fail (needs --reason; both kept in history)."
        ),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option("--reason", "-m", help="Why; kept in the alias history.", show_default=False),
    ] = None,
    log_store: LogStoreOption = None,
    registry: RegistryOption = None,
    config: ConfigOption = None,
) -> None:
    """Judge the shadow evidence and, if every criterion passes, make the candidate production.

    The criteria are the shadow.promotion settings (config file, or environment
    such as KEEL_SHADOW__PROMOTION__MIN_HOURS=0). Running servers pick the new
    production version up through their alias watcher.
    """
    if force and not (reason and reason.strip()):
        raise typer.BadParameter(
            "--force needs --reason: say why the evidence is overridden (kept in the history)",
            param_hint="--reason",
        )
    settings = settings_for(registry, config)
    criteria = settings.shadow.promotion
    store = open_registry(settings)
    log = read_log(settings, name, log_store)
    logged = select_candidate(model_records(log.records, name), candidate)
    version = registry_version(store, name, logged)
    report = build_report(
        log.records,
        log.candidates,
        store.metadata(name, version).signature.outputs,
        model=name,
        candidate_version=logged,
        top=0,
        score_tolerance=criteria.score_tolerance,
    )
    verdict = judge(report, criteria)
    print_verdict(verdict, title=escape(f"Promotion of {name} {version}"))
    if store.aliases(name).get(PRODUCTION) == version:
        console.print(f"{escape(name)}@{PRODUCTION} is already {escape(version)}; nothing to do")
        return
    if not verdict.passed and not force:
        failed = "; ".join(c.describe() for c in verdict.failed)
        raise PromotionRefused(
            f"{name} {version} is not promoted, the shadow evidence falls short: {failed}. "
            "Let it shadow longer, or override with --force --reason TEXT"
        )
    forced = reason.strip() if force and reason and not verdict.passed else None
    text = promotion_reason(report, verdict, forced)
    if reason and forced is None:
        text += f"; {reason.strip()}"
    event = store.set_alias(name, PRODUCTION, version, reason=text)
    if forced is not None:
        err_console.print(
            f"[bold yellow]forced:[/] {len(verdict.failed)} criteria not met; "
            "that is kept in the alias history",
            highlight=False,
        )
    was = f" (was {escape(event.previous)})" if event.previous else ""
    console.print(f"{escape(name)}@{PRODUCTION} → {escape(version)}{was}")
