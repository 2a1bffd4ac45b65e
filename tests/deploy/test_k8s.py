"""keel's Kubernetes manifests: valid for a pinned Kubernetes, offline, and true to keel.

The core objects are validated with the schemas that kubernetes-validate bundles
(strict: unknown fields are errors); no network is used. The ServiceMonitor is a
Prometheus Operator custom resource, absent from those schemas: it is checked by
structure instead.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from keel.configuration import load_settings
from keel.settings import ServerSettings, Settings

REPO = Path(__file__).resolve().parents[2]
K8S_DIR = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"
CORE_FILES = ["configmap.yaml", "deployment.yaml", "hpa.yaml", "pdb.yaml", "service.yaml"]
# docs/benchmarks.md: peak RSS of keel serving the two example models, ready.
BENCHMARK_RSS_MIB = 127
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
# Pods are reached on their pod IP, so keel must listen beyond loopback.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104

Manifest = dict[str, Any]


def load(name: str) -> Manifest:
    documents = [d for d in yaml.safe_load_all((K8S_DIR / name).read_text()) if d]
    assert len(documents) == 1, f"{name} holds one object"
    document: Manifest = documents[0]
    return document


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network use during validation: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def deployment() -> Manifest:
    return load("deployment.yaml")


@pytest.fixture(scope="module")
def pod(deployment: Manifest) -> Manifest:
    spec: Manifest = deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: Manifest) -> Manifest:
    containers = pod["containers"]
    assert len(containers) == 1
    keel: Manifest = containers[0]
    return keel


@pytest.fixture(scope="module")
def served_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The settings keel builds from the ConfigMap's file, as `keel serve --config` does."""
    config = tmp_path_factory.mktemp("config") / "keel.toml"
    config.write_text(load("configmap.yaml")["data"]["keel.toml"])
    # The pod's environment, not the test session's (conftest turns gRPC off there).
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KEEL_SERVER__GRPC_PORT", raising=False)
        return load_settings(config)


def test_every_manifest_is_listed() -> None:
    assert sorted(p.name for p in K8S_DIR.glob("*.yaml")) == sorted(
        [*CORE_FILES, "servicemonitor.yaml"]
    )


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("name", CORE_FILES)
def test_core_manifest_is_valid_for_the_pinned_kubernetes(name: str) -> None:
    validated = kubernetes_validate.validate(load(name), KUBERNETES_VERSION, strict=True)
    assert validated == "1.33"


@pytest.mark.usefixtures("no_network")
def test_validation_rejects_a_misspelt_field(deployment: Manifest) -> None:
    # Guards the test above: strict schemas reject fields Kubernetes would ignore.
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_service_monitor_scrapes_metrics_on_the_service_port() -> None:
    monitor = load("servicemonitor.yaml")
    service = load("service.yaml")
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(monitor, KUBERNETES_VERSION, strict=True)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    assert monitor["metadata"]["name"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    port_names = {port["name"] for port in service["spec"]["ports"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in port_names
    assert endpoint["path"] == "/metrics"


def test_probes_gate_on_model_readiness_on_the_serving_port(container: Manifest) -> None:
    port, grpc = container["ports"]
    assert port["containerPort"] == ServerSettings().port
    assert (grpc["name"], grpc["containerPort"]) == ("grpc", ServerSettings().grpc_port)
    for probe, path in (("startupProbe", READY_PATH), ("livenessProbe", LIVE_PATH)):
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert check["port"] in (port["name"], port["containerPort"]), probe
    # Readiness through grpc.health.v1, which answers from the same readiness
    # (tests/serving/test_grpc_protocol.py); Kubernetes' gRPC probe takes a port number.
    assert container["readinessProbe"]["grpc"] == {"port": grpc["containerPort"]}


def test_startup_probe_allows_minutes_for_model_load(container: Manifest) -> None:
    startup = container["startupProbe"]
    # The example models are ready in ~2-3 s; downloads from a registry take longer.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def test_termination_outlasts_the_prestop_sleep_and_keels_drain(
    pod: Manifest, container: Manifest, served_settings: Settings
) -> None:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop_s = float(command[1])
    assert pre_stop_s > 0, "endpoints deregister before the drain starts"
    grace_s = served_settings.server.grace_period_s
    assert grace_s == ServerSettings().grace_period_s
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + grace_s


def test_pod_runs_unprivileged_on_a_read_only_root(pod: Manifest, container: Manifest) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1001
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 1001
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]


def test_keel_can_write_its_cache_and_tmp(
    pod: Manifest, container: Manifest, served_settings: Settings
) -> None:
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs}
    assert served_settings.cache_dir in writable
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KEEL_CACHE_DIR"] == served_settings.cache_dir
    assert "/tmp" in writable


def test_config_map_is_what_keel_serve_reads(
    pod: Manifest, container: Manifest, served_settings: Settings
) -> None:
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == load("configmap.yaml")["metadata"]["name"]
    assert config_path.name in load("configmap.yaml")["data"]
    assert served_settings.models, "the config names the models to serve"
    assert served_settings.server.host == ALL_INTERFACES
    assert served_settings.server.port == container["ports"][0]["containerPort"]
    assert served_settings.server.grpc_port == container["ports"][1]["containerPort"]


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1.0, "Gi": 1024.0, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def test_memory_is_sized_from_the_benchmark_with_headroom(container: Manifest) -> None:
    resources = container["resources"]
    request = mebibytes(resources["requests"]["memory"])
    limit = mebibytes(resources["limits"]["memory"])
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    # KEEL_SERVER__WORKERS=auto: one worker per CPU of the limit, each process's RSS.
    assert env["KEEL_SERVER__WORKERS"] == "auto"
    workers = int(float(resources["limits"]["cpu"]))
    assert request >= 1.5 * BENCHMARK_RSS_MIB * workers
    assert limit >= request
    assert "cpu" in resources["requests"], "the HPA's utilisation is relative to it"


def test_prometheus_annotations_point_at_metrics(deployment: Manifest, container: Manifest) -> None:
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_service_pdb_and_hpa_select_the_deployment(
    deployment: Manifest, container: Manifest
) -> None:
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"].items()
    service, pdb, hpa = load("service.yaml"), load("pdb.yaml"), load("hpa.yaml")
    assert service["spec"]["selector"].items() <= pod_labels
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {
        port["name"] for port in container["ports"]
    }
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # The budget still leaves a replica serving at the HPA's minimum.
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["maxUnavailable"]
