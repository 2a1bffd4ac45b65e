"""A user's mistake gets one line saying what is wrong and what to do, never a traceback.

Each test is a mistake a new user made, run through the real ``keel`` command.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from keel.cli import app as cli
from keel.errors import ModelNotFound
from support import run_keel

# Long enough to load a model, far shorter than a server left running would take.
STOPS_WITHIN_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _keel(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``keel`` with extra environment variables; a server that starts instead fails the test."""
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=STOPS_WITHIN_S,
        check=False,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _serve(registry: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _keel("serve", "--registry", str(registry), "--port", str(_free_port()), *args, **env)


def test_typos_in_the_config_file_stop_serve_naming_each_key(
    demo_registry: Path, tmp_path: Path
) -> None:
    config = tmp_path / "keel.toml"
    config.write_text(
        "[server]\nprot = 1\n[batching]\nmax_batch_sise = 8\n[runtime]\nintra_op_thread = 2\n"
    )
    result = _serve(demo_registry, "breast-cancer@production", "--config", str(config))
    assert result.returncode == 2
    error = _one_error_line(result)
    assert "server.prot (did you mean server.port?)" in error
    assert "batching.max_batch_sise (did you mean batching.max_batch_size?)" in error
    assert "runtime.intra_op_thread (did you mean runtime.intra_op_threads?)" in error
    assert "listening" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("KEEL_SERVER__PROT", "KEEL_SERVER__PORT"),
        ("KEEL_BATCHING__MAX_BATCH_SISE", "KEEL_BATCHING__MAX_BATCH_SIZE"),
        ("KEEL_PROT", "KEEL_SERVER__PORT"),
    ],
)
def test_a_keel_variable_that_names_no_setting_stops_serve(
    demo_registry: Path, variable: str, meant: str
) -> None:
    result = _serve(demo_registry, "breast-cancer@production", **{variable: "9000"})
    assert result.returncode == 2
    error = _one_error_line(result)
    assert f"{variable} names no setting (did you mean {meant}?)" in error


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("--port", "80000"), {}, "--port"),
        (("--port", "0"), {}, "--port"),
        ((), {"KEEL_SERVER__PORT": "80000"}, "KEEL_SERVER__PORT"),
    ],
)
def test_a_port_outside_1_to_65535_is_refused(
    demo_registry: Path, args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    result = _keel(
        "serve", "breast-cancer@production", "--registry", str(demo_registry), *args, **env
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert named in result.stderr
    assert "65535" in result.stderr or "greater than or equal to 1" in result.stderr


def test_serving_a_model_the_registry_does_not_hold_stops_listing_its_models(
    demo_registry: Path,
) -> None:
    result = _serve(demo_registry, "nosuchmodel@production")
    assert result.returncode == 7
    error = _one_error_line(result)
    assert "no model 'nosuchmodel'" in error
    assert "it holds: breast-cancer, digits-mlp" in error


def test_serving_an_alias_the_model_lacks_stops_listing_its_aliases(demo_registry: Path) -> None:
    result = _serve(demo_registry, "breast-cancer@prod", "digits-mlp@production")
    assert result.returncode == 7
    error = _one_error_line(result)
    assert "breast-cancer has no alias 'prod' (its aliases: candidate, production" in error


def test_a_shadow_candidate_the_registry_does_not_hold_stops_serve(demo_registry: Path) -> None:
    result = _serve(demo_registry, "breast-cancer@production", "--shadow", "breast-cancer@candidat")
    assert result.returncode == 7
    assert "no alias 'candidat'" in _one_error_line(result)


@pytest.mark.parametrize(
    "command",
    [
        ("models", "list"),
        ("models", "list", "--json"),
        ("models", "show", "breast-cancer@production"),
        ("verify", "breast-cancer@production"),
        ("env", "diff", "breast-cancer@production"),
        ("alias", "history", "breast-cancer"),
    ],
    ids=" ".join,
)
def test_a_registry_folder_that_does_not_exist_is_an_error_naming_it(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    result = run_keel(*command, "--registry", str(missing))
    assert result.returncode == 7
    error = _one_error_line(result)
    assert f"registry folder {missing} does not exist" in error
    assert "--registry" in error
    assert "No models" not in result.stdout
    assert not missing.exists()


def test_drift_report_without_a_server_names_the_url_and_the_flag() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = run_keel("drift", "report", "breast-cancer", "--url", url)
    assert result.returncode == 8
    error = _one_error_line(result)
    assert url in error
    assert "--url" in error.split(url, 1)[1]


def test_an_error_naming_brackets_prints_them_as_written(tmp_path: Path) -> None:
    # The model name is refused, and its message quotes it: "[/y]" is not a Rich tag.
    result = run_keel("models", "show", "x[/y][bold]@production", "--registry", str(tmp_path))
    assert result.returncode == 3
    assert "x[/y][bold]" in _one_error_line(result)


@pytest.mark.parametrize(
    ("raised", "code", "label"),
    [
        (ModelNotFound("no model 'a[/x]' [bold]here[/bold] [/]"), 7, "error:"),
        (RuntimeError("broken [/x] and [bold]"), cli.INTERNAL_ERROR, "internal error:"),
    ],
)
@pytest.mark.parametrize("console_fails", [False, True])
def test_the_last_resort_handler_cannot_itself_fail(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    raised: Exception,
    code: int,
    label: str,
    console_fails: bool,
) -> None:
    def command() -> None:
        raise raised

    def broken_print(*args: object, **kwargs: object) -> None:
        raise OSError("the terminal went away")

    monkeypatch.setattr(cli, "app", command)
    if console_fails:
        monkeypatch.setattr(cli.err_console, "print", broken_print)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == code
    printed = capsys.readouterr().err
    assert printed.startswith(label)
    assert str(raised) in printed
