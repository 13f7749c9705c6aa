"""What the deployment exposes and grants, checked in its files (issue 18): ports on 127.0.0.1 unless opted in, TLS
and SASL wired for what crosses the network, least-privilege Secrets, no secret on a command line, the restricted
Pod Security Standard, probes, rollouts, re-runnable Jobs, storage classes, the build context."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pipeline.review.auth import token_problem
from tests.deploy.files import ROOT, compose, load_module, manifest, manifests, pod_spec, workloads

STACK_ENV = load_module("scripts/stack_env.py")
ENV_EXAMPLE = STACK_ENV.dotenv(ROOT / ".env.example")
SECRET_NAMES = ("DATABASE_URL", "TOKEN", "SECRET", "PASSWORD")


def published(service: dict[str, Any], variables: dict[str, str]) -> list[tuple[str, str]]:
    """(host address, host port) of each published port, `${VAR:-default}` filled in from `variables`."""
    found = []
    for port in service.get("ports", []):
        parts = STACK_ENV.interpolate(str(port), variables).split(":")
        assert len(parts) == 3, f"{port}: name the host address (ADDRESS:HOST:CONTAINER)"
        found.append((parts[0], parts[1]))
    return found


@pytest.mark.parametrize("variables", [{}, ENV_EXAMPLE], ids=["unset", "env-example"])
def test_every_published_port_listens_on_loopback_unless_opted_in(variables: dict[str, str]) -> None:
    services = compose()["services"]
    for name, service in services.items():
        for address, port in published(service, variables):
            assert address == "127.0.0.1", f"{name} publishes {port} on {address} by default"
    assert "ports" not in services["consumer"] and "ports" not in services["prometheus"]
    opened = published(services["kafka"], {"KAFKA_BIND": "0.0.0.0"})
    assert opened == [("0.0.0.0", "9092")]  # the operator's choice, in .env


def test_tls_in_front_of_the_review_page_and_sasl_ssl_for_kafkas_external_listener() -> None:
    services = compose()["services"]
    proxy = services["review-tls"]
    assert proxy["profiles"] == ["tls"] and proxy["image"].startswith("caddy:")
    caddyfile = (ROOT / "deploy" / "tls" / "Caddyfile").read_text()
    assert "reverse_proxy review:8080" in caddyfile and "tls {$REVIEW_TLS_MODE}" in caddyfile
    assert any(m.endswith(":/etc/caddy/Caddyfile:ro") for m in proxy["volumes"])

    kafka = compose("deploy/compose.kafka-tls.yml")["services"]["kafka"]["environment"]
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols == {"INTERNAL": "PLAINTEXT", "EXTERNAL": "SASL_SSL", "CONTROLLER": "PLAINTEXT"}
    assert "${KAFKA_CAMERA_PASSWORD:?" in kafka["KAFKA_LISTENER_NAME_EXTERNAL_PLAIN_SASL_JAAS_CONFIG"]
    assert kafka["KAFKA_SSL_KEYSTORE_TYPE"] == "PEM"
    base = compose()["services"]["kafka"]["environment"]
    assert re.fullmatch(r"\$\{KAFKA_CLUSTER_ID:-[A-Za-z0-9_-]{22}\}", base["CLUSTER_ID"])


def secret_refs(container: dict[str, Any]) -> set[str]:
    refs = {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
    refs |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", []) if "valueFrom" in e}
    return refs


def test_each_workload_gets_only_the_secrets_it_uses() -> None:
    wanted = {
        "lineguard-consumer": {"lineguard-db", "lineguard-webhook"},
        "lineguard-review": {"lineguard-review"},
        "lineguard-migrate": {"lineguard-db"},
        "lineguard-retrain": {"lineguard-db"},
        "lineguard-first-model": set(),
        "lineguard-topics": set(),
    }
    for obj in workloads():
        refs = set().union(*(secret_refs(c) for c in pod_spec(obj)["containers"]))
        assert refs == wanted[obj["metadata"]["name"]], obj["metadata"]["name"]
    review = manifest("Secret", "lineguard-review")["stringData"]
    assert set(review) == {"LINEGUARD_DATABASE_URL", "LINEGUARD_REVIEW_TOKENS"}
    assert "lineguard_review:" in review["LINEGUARD_DATABASE_URL"]  # its own role, not the owner
    assert not any("REVIEW_TOKEN" in key for key in manifest("Secret", "lineguard-db")["stringData"])


def test_the_secret_templates_placeholders_are_refused_by_the_programs() -> None:
    import json

    for token in json.loads(manifest("Secret", "lineguard-review")["stringData"]["LINEGUARD_REVIEW_TOKENS"]).values():
        assert token_problem(token) is not None


def test_no_secret_on_a_command_line() -> None:
    for obj in workloads():
        for container in pod_spec(obj)["containers"]:
            line = " ".join(map(str, [*container.get("command", []), *container.get("args", [])]))
            for name in SECRET_NAMES:
                assert not re.search(rf"\$\{{?LINEGUARD_\w*{name}", line), f"{obj['metadata']['name']}: {line}"
    for name, service in compose()["services"].items():
        command = " ".join(map(str, service.get("command") or []))
        assert not re.search(r"\$\{?\w*(PASSWORD|TOKEN|SECRET)", command), name


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    for obj in workloads():
        spec = pod_spec(obj)
        name = obj["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec.get("automountServiceAccountToken") is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"] and not context["capabilities"].get("add"), name
            assert not context.get("privileged"), name


def test_liveness_never_needs_the_database() -> None:
    review = pod_spec(manifest("Deployment", "lineguard-review"))["containers"][0]
    assert review["livenessProbe"]["httpGet"]["path"] == "/healthz"  # served without a query
    assert review["readinessProbe"]["httpGet"]["path"] == "/readyz"
    consumer = pod_spec(manifest("Deployment", "lineguard-consumer"))["containers"][0]
    assert consumer["livenessProbe"]["httpGet"]["path"] == "/metrics"  # from memory once started
    assert consumer["startupProbe"]["httpGet"]["path"] == "/metrics"


def test_consumer_rollouts_fit_gpus_and_leave_the_count_to_keda() -> None:
    deployment = manifest("Deployment", "lineguard-consumer")
    assert "replicas" not in deployment["spec"]
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxSurge"] == 0
    assert strategy["rollingUpdate"]["maxUnavailable"] >= 1


def test_jobs_can_be_run_again() -> None:
    for obj in manifests():
        if obj["kind"] == "Job":
            assert obj["spec"].get("ttlSecondsAfterFinished", 0) > 0, obj["metadata"]["name"]
    deploy_doc = (ROOT / "docs" / "DEPLOY.md").read_text()
    assert "kubectl delete job lineguard-migrate --ignore-not-found" in deploy_doc


def test_storage_classes_are_documented() -> None:
    claims = [obj for obj in manifests() if obj["kind"] == "PersistentVolumeClaim"]
    assert claims and all(c["spec"]["accessModes"] == ["ReadWriteMany"] for c in claims)
    storage = (ROOT / "deploy" / "k8s" / "storage.yaml").read_text()
    deploy_doc = (ROOT / "docs" / "DEPLOY.md").read_text()
    for text in (storage, deploy_doc):
        assert "storageClassName" in text and "ReadWriteMany" in text


def test_the_build_context_and_health_checks_fit_each_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "data", "tests"} <= set(ignored)
    dockerfile = (ROOT / "deploy" / "Dockerfile.line").read_text()
    assert "ENV ROLE=$INSTALL" in dockerfile and "/healthz" in dockerfile and "/metrics" in dockerfile
    services = compose()["services"]
    assert services["migrate"]["healthcheck"] == {"disable": True}


def test_stack_keeps_its_token_private() -> None:
    script = (ROOT / "scripts" / "stack.sh").read_text()
    assert 'umask 077 && "$BIN/lineguard" review token > "$STACK_DIR/review-token"' in script
