"""Readers of the deployment files for the wiring tests: docker-compose.yml (compose's own YAML tags allowed), the
Kubernetes manifests, the shell commands that create the Kafka topics, and scripts loaded by path."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader that accepts compose's merge tags (`!reset`, `!override`) and keeps the value under the tag."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value = loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None
    return {"__tag__": suffix, "value": value}


ComposeLoader.add_multi_constructor("!", _tagged)


def compose(name: str = "docker-compose.yml") -> dict[str, Any]:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)


def manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object in deploy/k8s."""
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in deploy/k8s, found {len(found)}"
    return found[0]


def workloads() -> list[dict[str, Any]]:
    """The Deployments, Jobs and CronJobs of deploy/k8s: what runs a container."""
    return [doc for doc in manifests() if doc["kind"] in ("Deployment", "Job", "CronJob")]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template's spec of a Deployment, Job or CronJob."""
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def created_topics(command: str, variables: dict[str, str]) -> dict[str, dict[str, int]]:
    """Topics a kafka-topics.sh command line creates: name -> partitions and numeric --config values."""
    command = re.sub(r"\"?\$\$?(\w+)\"?", lambda m: variables.get(m.group(1), m.group(0)), command)
    common = dict(re.findall(r"--config ([\w.]+)=(\d+) \"\$\$?@\"", command))
    topics: dict[str, dict[str, int]] = {}
    for call in re.split(r";", command):
        name = re.search(r"--topic ([\w.]+)", call)
        if name is None or "--describe" in call:
            continue
        options = {key: int(value) for key, value in common.items()}
        options |= {key: int(value) for key, value in re.findall(r"--config ([\w.]+)=\"?(\d+)\"?", call)}
        options["partitions"] = int(re.search(r"--partitions \"?(\d+)\"?", call).group(1))  # type: ignore[union-attr]
        topics[name.group(1)] = options
    return topics


def load_module(relative: str) -> ModuleType:
    """A script of the repository (scripts/, deploy/: not packages), loaded from its path."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
