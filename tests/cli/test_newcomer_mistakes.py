"""Mistakes a newcomer made following README.md and docs/, each refused as one line.

None of these needs a model: every one is refused before the registry is read, so
the commands run against a registry folder that does not exist.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import keel
from keel.cli.serve import check_shadow_url
from keel.configuration import load_settings, not_json_environment
from keel.errors import InvalidConfig

FORWARDS_DOC = Path(__file__).resolve().parents[2] / "docs" / "forwards.md"


def _keel(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        capture_output=True, text=True, env=environ | env, timeout=60, check=False,
    )  # fmt: skip


def _refused(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The one ``error:`` line of a command that stopped with ``code``."""
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _keel("serve", "--registry", str(tmp_path / "registry"), "--port", "1", *args, **env)


@pytest.mark.parametrize(
    ("variable", "value", "shape"),
    [
        ("KEEL_MODELS", "churn@production", "a list"),
        ("KEEL_MODELS", "churn@production,churn@candidate", "a list"),
        ("KEEL_SHADOW__TARGETS", "churn@candidate", "a list of tables"),
        ("KEEL_DRIFT__MODELS", "churn", "a table of tables"),
        ("KEEL_SERVER", "port=8081", "a table"),
    ],
)
def test_a_list_or_table_variable_that_is_not_json_is_named_not_an_internal_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, shape: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidConfig) as refused:
        load_settings()
    message = str(refused.value)
    assert f"environment variable {variable} is not valid JSON" in message
    assert f"its setting is {shape}" in message
    assert f"e.g. {variable}='" in message


def test_the_example_in_the_keel_models_message_is_json_that_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (problem,) = not_json_environment({"KEEL_MODELS": "churn@production"})
    example = re.search(r"KEEL_MODELS='(.*)'$", problem)
    assert example is not None, problem
    monkeypatch.setenv("KEEL_MODELS", example[1])
    assert load_settings().models == ["churn@production"]


def test_json_variables_and_plain_settings_are_not_reported() -> None:
    environ = {
        "KEEL_MODELS": '["churn@production"]',
        "KEEL_SERVER__PORT": "not a number, but not this check's business",
        "KEEL_SERVICE_HOST": "10.0.0.1",
        "PATH": "/usr/bin",
    }
    assert not_json_environment(environ) == []


def test_serve_with_keel_models_not_json_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = _serve(tmp_path, KEEL_MODELS="churn@production")
    error = _refused(result)
    assert "KEEL_MODELS is not valid JSON" in error
    assert """KEEL_MODELS='["churn@production"]'""" in error


def test_serve_with_no_model_is_a_wrong_invocation(tmp_path: Path) -> None:
    error = _refused(_serve(tmp_path))
    assert "name at least one model to serve" in error


@pytest.mark.parametrize(
    ("flag", "env", "given"),
    [
        (("--workers", "0"), {}, "0"),
        (("--workers", "many"), {}, "'many'"),
        (("-w", "2.5"), {}, "'2.5'"),
        ((), {"KEEL_SERVER__WORKERS": "-1"}, "'-1'"),
    ],
)
def test_a_worker_count_that_is_none_is_one_line_naming_the_rule(
    tmp_path: Path, flag: tuple[str, ...], env: dict[str, str], given: str
) -> None:
    error = _refused(_serve(tmp_path, "churn@production", *flag, **env))
    # workers: (the flag) or KEEL_SERVER__WORKERS: (the variable), then the rule.
    assert "WORKERS: MUST BE 'AUTO' OR A WHOLE NUMBER OF PROCESSES FROM 1 TO 256" in error.upper()
    assert error.endswith(f"not {given}")
    assert "Value error" not in error


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("churn=", "names no URL"),
        ("", "names no URL"),
        ("notaurl", "is not a v2 model's URL"),
        ("ftp://host/v2/models/churn", "is not a v2 model's URL"),
        (
            "http://host:8000/v2/models/churn/infer",
            "(leave out /infer: http://host:8000/v2/models/churn)",
        ),
    ],
)
def test_a_shadow_url_the_mirror_cannot_call_stops_serve_before_it_starts(
    tmp_path: Path, given: str, said: str
) -> None:
    error = _refused(_serve(tmp_path, "churn@production", "--shadow-url", given))
    assert said in error
    assert "http://HOST:PORT/v2/models/NAME[/versions/VERSION]" in error


def test_a_shadow_candidate_for_a_model_not_served_is_a_wrong_flag(tmp_path: Path) -> None:
    error = _refused(_serve(tmp_path, "churn@production", "--shadow", "other@candidate"))
    assert "shadow candidate for 'other': that model is not served (served: churn)" in error


@pytest.mark.parametrize(
    "url",
    [
        "http://host:8000/v2/models/churn",
        "http://host:8000/v2/models/churn/",
        "https://host/v2/models/churn/versions/3",
    ],
)
def test_a_v2_model_url_is_accepted(url: str) -> None:
    check_shadow_url(url)


def test_publish_names_every_file_that_does_not_exist_and_publishes_nothing(
    tmp_path: Path,
) -> None:
    registry = tmp_path / "registry"
    result = _keel(
        "publish", str(tmp_path / "model.onnx"), "--name", "churn",
        "--signature", str(tmp_path / "signature.json"),
        "--reference", str(tmp_path / "valid.csv"), "--registry", str(registry),
    )  # fmt: skip
    error = _refused(result)
    assert f"model file {tmp_path / 'model.onnx'} does not exist" in error
    assert f"--signature {tmp_path / 'signature.json'} does not exist" in error
    assert f"--reference {tmp_path / 'valid.csv'} does not exist" in error
    assert not registry.exists()


def test_the_forwards_doc_load_runtime_line_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/forwards.md's check of a torch-mlp file against the model, on a state_dict."""
    (line,) = re.findall(r"`(keel\.load_runtime\(.*?\)\.predict\(.*?\))`", FORWARDS_DOC.read_text())
    rng = np.random.default_rng(0)
    weights = {
        "0.weight": rng.normal(size=(16, 4)), "0.bias": rng.normal(size=16),
        "2.weight": rng.normal(size=(3, 16)), "2.bias": rng.normal(size=3),
    }  # fmt: skip
    save_file({k: v.astype(np.float32) for k, v in weights.items()}, tmp_path / "model.safetensors")
    monkeypatch.chdir(tmp_path)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    # The doc says where Path comes from (pathlib) and that x is a float32 array.
    outputs = eval(line, {"keel": keel, "Path": Path, "x": x})  # noqa: S307 - the doc's line
    hidden = np.maximum(x @ weights["0.weight"].T + weights["0.bias"], 0)
    logits = hidden @ weights["2.weight"].T + weights["2.bias"]
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(outputs["probabilities"], expected, rtol=1e-4, atol=1e-6)
    assert outputs["label"].tolist() == expected.argmax(axis=1).tolist()
