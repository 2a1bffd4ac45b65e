"""keel's KServe manifests: valid against KServe's custom resource schemas, offline.

The ClusterServingRuntime and InferenceService are KServe custom resources, absent
from the core Kubernetes schemas that tests/deploy/test_k8s.py uses. They are checked
with jsonschema against the vendored schemas in tests/deploy/kserve_schemas/, derived
from KServe's CRDs and closed to the fields keel uses (a misspelt field fails).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from keel.registry import parse_ref
from keel.settings import Settings

REPO = Path(__file__).resolve().parents[2]
KSERVE_DIR = REPO / "deploy" / "kserve"
SCHEMA_DIR = Path(__file__).parent / "kserve_schemas"
DEPLOYMENT = REPO / "deploy" / "k8s" / "deployment.yaml"
# The image's entrypoint (Dockerfile), which KServe's args are appended to.


def _entrypoint() -> list[str]:
    """The image's ENTRYPOINT, the command the merged args follow."""
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    line = next(x for x in dockerfile.splitlines() if x.startswith("ENTRYPOINT "))
    command: list[str] = json.loads(line.removeprefix("ENTRYPOINT "))
    return command


ENTRYPOINT_ARGS = _entrypoint()
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a container listens on every interface
MANIFESTS = {
    "clusterservingruntime.yaml": "clusterservingruntime.v1alpha1.json",
    "inferenceservice.yaml": "inferenceservice.v1beta1.json",
}

Manifest = dict[str, Any]


def load(name: str) -> Manifest:
    documents = [d for d in yaml.safe_load_all((KSERVE_DIR / name).read_text()) if d]
    assert len(documents) == 1, f"{name} holds one object"
    document: Manifest = documents[0]
    return document


def validator_for(manifest_name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / MANIFESTS[manifest_name]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def runtime() -> Manifest:
    return load("clusterservingruntime.yaml")


@pytest.fixture(scope="module")
def service() -> Manifest:
    return load("inferenceservice.yaml")


@pytest.fixture(scope="module")
def container(runtime: Manifest) -> Manifest:
    [keel] = runtime["spec"]["containers"]
    assert keel["name"] == "kserve-container", "the container KServe merges the model into"
    result: Manifest = keel
    return result


def merged_container(runtime_container: Manifest, model: Manifest) -> Manifest:
    """The container KServe runs: env merged by name (the model's wins), args appended."""
    env = {e["name"]: e for e in runtime_container.get("env", [])}
    env.update({e["name"]: e for e in model.get("env", [])})
    return {
        "args": [*runtime_container.get("args", []), *model.get("args", [])],
        "env": list(env.values()),
    }


def test_every_manifest_is_listed() -> None:
    assert sorted(p.name for p in KSERVE_DIR.glob("*.yaml")) == sorted(MANIFESTS)


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_is_valid_for_the_kserve_schema(name: str) -> None:
    validator_for(name).validate(load(name))


def test_validation_rejects_a_misspelt_field(container: Manifest, runtime: Manifest) -> None:
    broken = yaml.safe_load(yaml.safe_dump(runtime))
    keel = broken["spec"]["containers"][0]
    keel["readinesProbe"] = keel.pop("readinessProbe")
    with pytest.raises(jsonschema.ValidationError):
        validator_for("clusterservingruntime.yaml").validate(broken)


def test_validation_rejects_a_model_without_a_format(service: Manifest) -> None:
    broken = yaml.safe_load(yaml.safe_dump(service))
    del broken["spec"]["predictor"]["model"]["modelFormat"]
    with pytest.raises(jsonschema.ValidationError):
        validator_for("inferenceservice.yaml").validate(broken)


def test_inference_service_uses_the_keel_runtime_and_a_format_it_supports(
    runtime: Manifest, service: Manifest
) -> None:
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] == "keel"
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert {"keel", "onnx"} <= formats
    assert model["modelFormat"]["name"] in formats


def test_protocol_is_the_open_inference_protocol(runtime: Manifest, service: Manifest) -> None:
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    assert service["spec"]["predictor"]["model"]["protocolVersion"] == "v2"


def test_probes_gate_on_model_readiness_on_the_serving_port(container: Manifest) -> None:
    [port] = container["ports"]
    assert port["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in (port["containerPort"], port["name"])


def test_security_context_is_the_plain_deployments(container: Manifest) -> None:
    [deployed] = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"] == deployed["securityContext"]
    assert container["image"] == deployed["image"]


def test_keel_can_write_its_cache_and_tmp(runtime: Manifest, container: Manifest) -> None:
    empty_dirs = {v["name"] for v in runtime["spec"]["volumes"] if "emptyDir" in v}
    writable = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert {env["KEEL_CACHE_DIR"], "/tmp"} <= writable


def test_registry_and_model_reference_reach_keel_serve(
    container: Manifest,
    service: Manifest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The merged container's env gives keel's settings, its args a model reference keel reads."""
    merged = merged_container(container, service["spec"]["predictor"]["model"])
    for name in [n for n in os.environ if n.startswith("KEEL_")]:
        monkeypatch.delenv(name)
    for variable in merged["env"]:
        monkeypatch.setenv(variable["name"], variable["value"])
    settings = Settings()
    assert settings.registry == "s3://keel-models/registry"
    # KServe's revisions roll versions out, not keel's alias watcher.
    assert settings.server.watch_interval_s == 0
    ref = parse_ref(merged["args"][0])
    assert (ref.name, ref.selector) == ("breast-cancer", "production")
    assert merged["args"] == ["breast-cancer@production"]
    # The image's entrypoint binds every interface on the container port.
    port = str(container["ports"][0]["containerPort"])
    assert ENTRYPOINT_ARGS[ENTRYPOINT_ARGS.index("--host") + 1] == ALL_INTERFACES
    assert ENTRYPOINT_ARGS[ENTRYPOINT_ARGS.index("--port") + 1] == port
