"""The ``keel`` command line, run as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from support import OnnxModel, run_keel


@pytest.fixture
def signature_file(breast_cancer_model: OnnxModel, tmp_path: Path) -> Path:
    path = tmp_path / "signature.json"
    path.write_text(breast_cancer_model.signature.to_json())
    return path


@pytest.fixture
def reference_file(breast_cancer_model: OnnxModel, tmp_path: Path) -> Path:
    path = tmp_path / "validation.csv"
    breast_cancer_model.valid_frame.to_csv(path, index=False)
    return path


def _publish(
    model: OnnxModel, registry: Path, signature: Path, reference: Path, *extra: str
) -> str:
    result = run_keel(
        "publish",
        str(model.path),
        "--name",
        "cancer",
        "--signature",
        str(signature),
        "--reference",
        str(reference),
        "--registry",
        str(registry),
        *extra,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[1]


def test_publish_list_show_alias_verify(
    breast_cancer_model: OnnxModel, tmp_path: Path, signature_file: Path, reference_file: Path
) -> None:
    registry = tmp_path / "registry"
    ref = _publish(
        breast_cancer_model, registry, signature_file, reference_file, "--alias", "production"
    )
    assert ref.startswith("cancer@")
    listing = json.loads(run_keel("models", "list", "--json", "--registry", str(registry)).stdout)
    assert listing == [
        {
            "name": "cancer",
            "versions": [ref.split("@")[1]],
            "aliases": {"production": ref.split("@")[1]},
        }
    ]
    shown = json.loads(
        run_keel(
            "models", "show", "cancer@production", "--json", "--registry", str(registry)
        ).stdout
    )
    assert shown["name"] == "cancer"
    assert shown["reference"]["rows"] == 143
    table = run_keel("models", "list", "--registry", str(registry))
    assert "cancer" in table.stdout
    assert "production" in table.stdout
    moved = run_keel(
        "alias",
        "set",
        "cancer",
        "candidate",
        "production",
        "-m",
        "try it",
        "--registry",
        str(registry),
    )
    assert moved.returncode == 0, moved.stderr
    history = json.loads(
        run_keel("alias", "history", "cancer", "--json", "--registry", str(registry)).stdout
    )
    assert [h["alias"] for h in history] == ["production", "candidate"]
    assert history[1]["reason"] == "try it"
    verified = run_keel("verify", "cancer@production", "--registry", str(registry))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK" in verified.stdout


@pytest.mark.parametrize("file_name", ["model.pkl", "model.onnx", "weights.safetensors", "m.bin"])
def test_publishing_a_pickle_fails_and_says_why(
    tmp_path: Path, signature_file: Path, file_name: str
) -> None:
    artifact = tmp_path / file_name
    artifact.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    result = run_keel(
        "publish",
        str(artifact),
        "--name",
        "cancer",
        "--signature",
        str(signature_file),
        "--registry",
        str(tmp_path / "registry"),
    )
    assert result.returncode == 4
    assert "pickle" in result.stderr.lower()
    assert "onnx" in result.stderr.lower() or "safetensors" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "registry" / "cancer").exists()


def test_verify_fails_on_flipped_byte_naming_the_file(
    breast_cancer_model: OnnxModel, tmp_path: Path, signature_file: Path, reference_file: Path
) -> None:
    registry = tmp_path / "registry"
    ref = _publish(breast_cancer_model, registry, signature_file, reference_file)
    version = ref.split("@")[1]
    artifact = registry / "cancer" / version / "model.onnx"
    data = bytearray(artifact.read_bytes())
    data[100] ^= 0xFF
    artifact.write_bytes(bytes(data))
    result = run_keel("verify", ref, "--registry", str(registry))
    assert result.returncode != 0
    assert "model.onnx" in result.stdout + result.stderr
    assert "hash" in result.stdout + result.stderr


def test_verify_fails_on_tampered_golden_output(
    breast_cancer_model: OnnxModel, tmp_path: Path, signature_file: Path, reference_file: Path
) -> None:
    registry = tmp_path / "registry"
    ref = _publish(breast_cancer_model, registry, signature_file, reference_file)
    metadata_path = registry / "cancer" / ref.split("@")[1] / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["golden"]["outputs"]["probabilities"][3][0] += 0.01
    metadata_path.write_text(json.dumps(metadata))
    result = run_keel("verify", ref, "--registry", str(registry))
    assert result.returncode == 1
    assert "golden" in result.stdout + result.stderr
    assert "probabilities" in result.stderr
    assert "1 of 64 values differ" in result.stderr


def test_env_diff_marks_critical_libraries(
    breast_cancer_model: OnnxModel, tmp_path: Path, signature_file: Path, reference_file: Path
) -> None:
    registry = tmp_path / "registry"
    ref = _publish(breast_cancer_model, registry, signature_file, reference_file)
    same = run_keel("env", "diff", ref, "--strict", "--registry", str(registry))
    assert same.returncode == 0, same.stdout + same.stderr
    metadata_path = registry / "cancer" / ref.split("@")[1] / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["environment"]["packages"]["numpy"] = "1.21.0"
    metadata["environment"]["packages"]["some-tool"] = "0.1"
    metadata_path.write_text(json.dumps(metadata))
    diff = json.loads(run_keel("env", "diff", ref, "--json", "--registry", str(registry)).stdout)
    by_name = {p["name"]: p for p in diff["packages"]}
    assert by_name["numpy"]["critical"] is True
    assert by_name["numpy"]["recorded"] == "1.21.0"
    assert by_name["some-tool"]["critical"] is False
    strict = run_keel("env", "diff", ref, "--strict", "--registry", str(registry))
    assert strict.returncode == 1
    assert "numpy" in strict.stdout


def test_unknown_model_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = run_keel("models", "show", "nothing@production", "--registry", str(tmp_path))
    assert result.returncode == 7
    assert result.stderr.strip().count("\n") == 0
    assert "nothing" in result.stderr
    assert "Traceback" not in result.stderr
    debug = run_keel("--debug", "models", "show", "nothing@production", "--registry", str(tmp_path))
    assert "Traceback" in debug.stderr


def test_help_lists_every_command() -> None:
    result = run_keel("--help")
    for command in ("publish", "models", "alias", "verify", "env", "demo"):
        assert command in result.stdout
