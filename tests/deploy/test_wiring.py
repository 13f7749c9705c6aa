"""The deployment's wiring, checked without Docker or a cluster: docker-compose.yml, .env.example, the Kubernetes
manifests and scripts/stack.sh name only real settings, and agree on ports, topics, size limits, the GPU request,
health checks and pinned images."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

from pipeline.metrics import ConsumerMetrics
from pipeline.settings import Settings
from tests.deploy.files import (
    K8S,
    ROOT,
    compose,
    created_topics,
    load_module,
    manifest,
    pod_spec,
    workloads,
)

# Every file a line engineer configures LineGuard through.
CONFIG_FILES = [
    ROOT / "docker-compose.yml",
    ROOT / ".env.example",
    ROOT / "deploy" / "compose.cpu.yml",
    ROOT / "deploy" / "Dockerfile.line",
    ROOT / "deploy" / "Dockerfile.train",
    ROOT / "scripts" / "stack.sh",
    ROOT / "scripts" / "first-model.sh",
    ROOT / "docs" / "DEPLOY.md",
    *sorted(K8S.glob("*.yaml")),
]
# compose's own reading of .env and `${VAR:-default}`, as scripts/stack.sh uses it
STACK_ENV = load_module("scripts/stack_env.py")
ENV_EXAMPLE = STACK_ENV.dotenv(ROOT / ".env.example")
# What an engineer fills into .env; the test stands in values for the secrets .env.example leaves empty.
FILLED = ENV_EXAMPLE | {"POSTGRES_PASSWORD": "pw", "LINEGUARD_REVIEW_TOKEN": "t" * 40, "GRAFANA_ADMIN_PASSWORD": "pw"}
LONG_RUNNING = ("kafka", "postgres", "consumer", "review", "review-tls", "prometheus", "grafana")


def service_env(name: str) -> dict[str, str]:
    raw = compose()["services"][name].get("environment") or {}
    return {key: STACK_ENV.interpolate(str(value), FILLED) for key, value in raw.items()}


def settings_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a process started with `env` reads (unknown names would be ignored, so check those apart)."""
    for name in [name for name in os.environ if name.startswith("LINEGUARD_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("LINEGUARD_"):
            monkeypatch.setenv(name, value)
    return Settings()


def k8s_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's environment: its ConfigMap and the Secret template, then its own env entries."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= manifest("ConfigMap", source["configMapRef"]["name"])["data"]
        if "secretRef" in source:
            env |= manifest("Secret", source["secretRef"]["name"])["stringData"]
    return env | {item["name"]: str(item["value"]) for item in container.get("env", [])}


def test_every_lineguard_name_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    seen: dict[str, set[str]] = {}
    for path in CONFIG_FILES:
        for name in re.findall(r"\bLINEGUARD_[A-Z0-9_]+\b", path.read_text()):
            seen.setdefault(name, set()).add(path.relative_to(ROOT).as_posix())
    assert len(seen) > 15, "the check found too few names to be looking at the right files"
    unknown = {
        name: sorted(files) for name, files in seen.items() if name.removeprefix("LINEGUARD_").lower() not in fields
    }
    assert not unknown, f"not settings of pipeline.settings.Settings (typo, or a setting renamed): {unknown}"


def test_compose_and_k8s_environments_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("migrate", "consumer", "review", "simulate"):
        settings = settings_of(service_env(name), monkeypatch)
        assert settings.bootstrap_servers == "kafka:29092"
    for obj in workloads():
        for container in pod_spec(obj)["containers"]:
            if container.get("envFrom"):
                settings_of(k8s_env(container), monkeypatch)


def test_topics_sizes_and_partitions_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    consumer = settings_of(service_env("consumer"), monkeypatch)
    wanted = {consumer.frames_topic, consumer.dlq_topic, consumer.alerts_topic}
    topics = created_topics(services["topics"]["command"][0], service_env("topics"))
    assert set(topics) == wanted
    assert topics[consumer.frames_topic]["partitions"] == int(ENV_EXAMPLE["FRAMES_PARTITIONS"])
    kafka = services["kafka"]["environment"]
    for limit in ("KAFKA_MESSAGE_MAX_BYTES", "KAFKA_REPLICA_FETCH_MAX_BYTES"):
        assert int(kafka[limit]) >= consumer.max_message_bytes, f"{limit} below a full frame plus headers"
    for topic in topics.values():
        assert topic["max.message.bytes"] >= consumer.max_message_bytes
    assert topics[consumer.frames_topic]["retention.bytes"] > 100 * consumer.max_message_bytes

    job = pod_spec(manifest("Job", "lineguard-topics"))["containers"][0]
    k8s_topics = created_topics(job["args"][0], {})
    config = settings_of(manifest("ConfigMap", "lineguard-config")["data"], monkeypatch)
    assert set(k8s_topics) == {config.frames_topic, config.dlq_topic, config.alerts_topic}
    assert all(topic["max.message.bytes"] >= config.max_message_bytes for topic in k8s_topics.values())

    scaler = manifest("ScaledObject", "lineguard-consumer")
    trigger = scaler["spec"]["triggers"][0]["metadata"]
    assert trigger["topic"] == config.frames_topic and trigger["consumerGroup"] == config.group_id
    partitions = k8s_topics[config.frames_topic]["partitions"]
    assert 1 <= scaler["spec"]["minReplicaCount"] <= scaler["spec"]["maxReplicaCount"] <= partitions
    assert trigger["allowIdleConsumers"] == "false"


def test_ports_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    metrics = settings_of(service_env("consumer"), monkeypatch).metrics_port
    assert "ports" not in services["consumer"]  # scraped on the compose network, not published
    assert f":{metrics}/metrics" in " ".join(services["consumer"]["healthcheck"]["test"])
    prometheus = (ROOT / "deploy" / "monitoring" / "prometheus.yml").read_text()
    assert f'"consumer:{metrics}"' in prometheus
    review = settings_of(service_env("review"), monkeypatch).review_port
    assert services["review"]["ports"] == [f"${{REVIEW_BIND:-127.0.0.1}}:{review}:{review}"]
    assert f":{review}/healthz" in " ".join(services["review"]["healthcheck"]["test"])

    deployment = manifest("Deployment", "lineguard-consumer")
    container = pod_spec(deployment)["containers"][0]
    k8s_metrics = settings_of(k8s_env(container), monkeypatch).metrics_port
    assert container["ports"][0]["containerPort"] == k8s_metrics
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(k8s_metrics)
    review_pod = pod_spec(manifest("Deployment", "lineguard-review"))["containers"][0]
    assert review_pod["ports"][0]["containerPort"] == settings_of(k8s_env(review_pod), monkeypatch).review_port


def test_gpu_is_requested_and_cpu_fallback_is_an_override() -> None:
    cpu_only = compose("deploy/compose.cpu.yml")["services"]
    for name in ("consumer", "train"):
        devices = compose()["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d["count"] >= 1 for d in devices)
        assert cpu_only[name]["deploy"]["__tag__"] == "reset", f"compose.cpu.yml leaves {name}'s GPU request"
    container = pod_spec(manifest("Deployment", "lineguard-consumer"))["containers"][0]
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_health_checks_are_present() -> None:
    services = compose()["services"]
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"compose service {name} has no health check"
    depends = services["consumer"]["depends_on"]
    assert {depends[name]["condition"] for name in ("topics", "migrate", "train")} == {"service_completed_successfully"}
    assert "HEALTHCHECK" in (ROOT / "deploy" / "Dockerfile.line").read_text()
    for name in ("lineguard-consumer", "lineguard-review"):
        for container in pod_spec(manifest("Deployment", name))["containers"]:
            assert container.get("livenessProbe") and container.get("readinessProbe"), f"{name} lacks probes"


def test_images_are_pinned_and_non_root() -> None:
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
    images = [service["image"] for service in compose()["services"].values()]
    images += [container["image"] for obj in workloads() for container in pod_spec(obj)["containers"]]
    for path in (ROOT / "deploy").glob("Dockerfile.*"):
        images += re.findall(r"^FROM (\S+)", path.read_text(), re.M)
        user = re.findall(r"^USER (\S+)", path.read_text(), re.M)
        assert user and user[-1] not in ("root", "0"), f"{path.name} runs as root"
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and re.search(r"\d+\.\d+", tag) and tag != "latest", f"image {image} is not pinned to a version"
        if name.startswith("lineguard-"):
            assert tag == version, f"{image}: LineGuard's own images carry the project version {version}"


def test_no_secret_in_images_or_committed_config() -> None:
    for path in (ROOT / "deploy").glob("Dockerfile.*"):
        text = path.read_text()
        for secret in ("DATABASE_URL", "TOKEN", "SECRET", "PASSWORD"):
            assert secret not in text, f"{path.name} mentions {secret}: secrets come from the environment"
    for name in ("POSTGRES_PASSWORD", "LINEGUARD_REVIEW_TOKEN", "GRAFANA_ADMIN_PASSWORD", "LINEGUARD_WEBHOOK_SECRET"):
        assert ENV_EXAMPLE[name] == "", f".env.example must leave {name} empty"
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text and not re.search(r"POSTGRES_PASSWORD: [^$]", text)


def test_dashboard_queries_only_metrics_the_consumer_exports() -> None:
    families = {metric.name for metric in ConsumerMetrics().registry.collect()}
    dashboard = json.loads((ROOT / "deploy/monitoring/grafana/dashboards/lineguard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for query in queries for name in re.findall(r"\blineguard_\w+", query)}
    suffixes = ("_total", "_bucket", "_sum", "_count", "_info", "")
    unknown = {name for name in used if not any(name.removesuffix(s) in families for s in suffixes if name.endswith(s))}
    assert not unknown, f"dashboard queries metrics the consumer does not export: {unknown}"
    wanted = ("frames_total", "consumer_lag", "latency", "defects_total", "dlq_total", "outbox_pending", "flag_rate")
    assert all(any(part in query for query in queries) for part in wanted)


def test_stack_runs_each_service_in_its_compose_environment() -> None:
    stack = {"STACK_DIR": "/tmp/stack", "STACK_KAFKA_PORT": "1", "STACK_DATABASE_URL": "postgresql+psycopg://x"}
    for name in ("migrate", "train", "consumer", "review", "simulate"):
        compose_env = {key: value for key, value in service_env(name).items() if key.startswith("LINEGUARD_")}
        ours = STACK_ENV.stack_environment(name, stack | {"LINEGUARD_REVIEW_TOKEN": FILLED["LINEGUARD_REVIEW_TOKEN"]})
        for key, value in compose_env.items():
            mapped = STACK_ENV.host_value(key, value, stack | {"STACK_METRICS_PORT": "9", "STACK_REVIEW_PORT": "8"})
            if mapped is None:
                assert ours[key] == value, f"{name}: {key} differs from compose"
            else:
                assert key in ours and not ours[key].startswith(("kafka:", "/models", "/var/lib/lineguard"))
    script = (ROOT / "scripts" / "stack.sh").read_text()
    for name in ("migrate", "consumer", "review", "simulate"):  # the very command lines compose runs
        assert re.search(rf"(start {name}|in_env) {name} --compose-command", script), name
        assert STACK_ENV.compose_command(name)[1:] == compose()["services"][name]["command"]
