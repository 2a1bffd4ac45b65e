"""The root ``keel`` command, and the one place exceptions become exit codes."""

from __future__ import annotations

import sys
import traceback
from typing import Annotated, NoReturn

import typer
from rich.text import Text

from keel import errors
from keel.cli import alias, demo, drift, env, models, promote, publish, serve, shadow, verify
from keel.cli.context import err_console

app = typer.Typer(
    name="keel",
    help="Run machine-learning models in production the boring, reliable way.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help texts are plain text: "[/versions/V]" in one must print, not parse as Rich
    # markup. The root's mode holds for every subcommand.
    rich_markup_mode=None,
)
app.add_typer(models.app, name="models")
app.add_typer(alias.app, name="alias")
app.add_typer(env.app, name="env")
app.add_typer(drift.app, name="drift")
app.add_typer(shadow.app, name="shadow")
app.command("publish")(publish.publish)
app.command("verify")(verify.verify)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.command("promote")(promote.promote)

_state = {"debug": False}

# Exit codes by error class, most specific first; 1 is any other keel error.
# 2 is also what a bad flag gets from the command-line parser: both are the user's input.
EXIT_CODES: tuple[tuple[type[errors.KeelError], int], ...] = (
    (errors.InvalidConfig, 2),
    (errors.InvalidRequest, 3),
    (errors.SignatureError, 3),
    (errors.InvalidName, 3),
    (errors.UnsafeArtifact, 4),
    (errors.IntegrityError, 5),
    (errors.GoldenMismatch, 6),
    (errors.ModelNotFound, 7),
    (errors.RegistryNotFound, 7),
    (errors.AmbiguousVersion, 7),
    (errors.NotMonitored, 7),
    (errors.ServerUnreachable, 8),
    (errors.PromotionRefused, 9),
    (errors.AddressUnavailable, 10),
)
INTERNAL_ERROR = 70


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.")
    ] = False,
) -> None:
    """Publish, verify and inspect models in a keel registry."""
    _state["debug"] = debug


def exit_code(exc: errors.KeelError) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return 1


def main() -> None:
    """Entry point of the ``keel`` console script."""
    try:
        app()
    except errors.KeelError as exc:
        _fail("error:", str(exc), exit_code(exc))
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a trace
        _fail(
            "internal error:",
            f"{type(exc).__name__}: {exc} (run again with --debug for the traceback)",
            INTERNAL_ERROR,
        )


def _fail(label: str, message: str, code: int) -> NoReturn:
    """Print one error line, its text never read as markup, and exit with ``code``."""
    if _state["debug"]:
        traceback.print_exc()
    try:
        err_console.print(Text.assemble((label, "bold red"), " ", message), highlight=False)
    except Exception:  # noqa: BLE001 - printing the error must not become a second error
        sys.stderr.write(f"{label} {message}\n")
    sys.exit(code)
