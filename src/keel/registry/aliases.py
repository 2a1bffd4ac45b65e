"""Aliases (``production``, ``candidate``, any name) and the history of every change."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

ALIASES_FILE = "aliases.json"


class AliasEvent(BaseModel):
    """One alias change: what moved where, from what, by whom, when and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alias: str
    version: str | None = Field(description="The version it now points to; None when removed.")
    previous: str | None
    at: datetime
    by: str
    reason: str


class AliasBook(BaseModel):
    """The current aliases of one model and their full history, stored as one document.

    One document (rewritten whole, atomically) rather than an append-only log,
    because object stores cannot append; the history is small.
    """

    model_config = ConfigDict(extra="forbid")

    aliases: dict[str, str] = Field(default_factory=dict)
    history: list[AliasEvent] = Field(default_factory=list)

    def apply(self, event: AliasEvent) -> None:
        if event.version is None:
            self.aliases.pop(event.alias, None)
        else:
            self.aliases[event.alias] = event.version
        self.history.append(event)
