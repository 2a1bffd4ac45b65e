"""Every command's ``--help`` renders, whatever its help text holds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer.main
from typer.testing import CliRunner

from keel.cli.app import app
from support import run_keel


def _command_paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    # Typer builds its commands on its own copy of click: a group is what has commands.
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*path, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


def test_the_walk_finds_every_command_and_subcommand() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "serve", "publish", "drift report", "shadow report", "models list"} <= names
    assert len(COMMANDS) > 15


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "keel")
def test_every_help_renders_and_exits_0(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_serve_help_prints_brackets_as_written() -> None:
    # "[/versions/V]" in --shadow-url's help once crashed as a Rich closing tag.
    result = run_keel("serve", "--help")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "[/ve" in result.stdout
