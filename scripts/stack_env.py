"""Run a command in the environment of one docker-compose.yml service, for scripts/stack.sh.

The LINEGUARD_* names and values are compose's own (read from docker-compose.yml, `${VAR:-default}` filled in from
the caller's environment, then .env, then .env.example); only what points into the container network or filesystem
is mapped to this machine: addresses (STACK_KAFKA_PORT, STACK_DATABASE_URL, 127.0.0.1 for every listener, published
ports) and the /models and /var/lib/lineguard volumes (under STACK_DIR). LINEGUARD_* variables of the caller that
compose does not set pass through unchanged.

    python scripts/stack_env.py SERVICE -- COMMAND [ARGS...]     run COMMAND in SERVICE's environment
    python scripts/stack_env.py SERVICE --compose-command         run `lineguard` with SERVICE's compose command
    python scripts/stack_env.py SERVICE                           print it as NAME=value lines
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
VOLUMES = {"/models": "models", "/var/lib/lineguard": ""}  # container path -> folder under STACK_DIR
REFERENCE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def dotenv(path: Path) -> dict[str, str]:
    """NAME=value lines of a .env file (no quoting, as .env.example writes them)."""
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}` (`$$` is a literal `$`)."""

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        given = variables.get(name, "")
        if given or operator is None:
            return given
        if operator.endswith("?"):
            raise SystemExit(f"error: {name}: {argument or 'not set'}")
        return argument

    return REFERENCE.sub(replace, value).replace("$$", "$")


def compose_service(service: str) -> dict[str, Any]:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    if service not in services:
        raise SystemExit(f"error: no service {service!r} in {COMPOSE.name}; it has {', '.join(services)}")
    return dict(services[service])


def compose_environment(service: str) -> dict[str, str]:
    """The raw (uninterpolated) LINEGUARD_* environment compose gives `service`."""
    environment = compose_service(service).get("environment") or {}
    return {name: str(value) for name, value in environment.items() if name.startswith("LINEGUARD_")}


def compose_command(service: str) -> list[str]:
    """The command line compose runs for `service` in a LineGuard image (entry point `lineguard`)."""
    command = compose_service(service).get("command")
    if not isinstance(command, list):
        raise SystemExit(f"error: service {service!r} has no command list in {COMPOSE.name}")
    return ["lineguard", *map(str, command)]


def host_value(name: str, value: str, stack: dict[str, str]) -> str | None:
    """What replaces a container address or path on this machine; None keeps compose's value."""
    mapped = {
        "LINEGUARD_BOOTSTRAP_SERVERS": f"127.0.0.1:{stack['STACK_KAFKA_PORT']}",
        "LINEGUARD_DATABASE_URL": stack["STACK_DATABASE_URL"],
        "LINEGUARD_METRICS_HOST": "127.0.0.1",
        "LINEGUARD_METRICS_PORT": stack["STACK_METRICS_PORT"],
        "LINEGUARD_REVIEW_HOST": "127.0.0.1",
        "LINEGUARD_REVIEW_PORT": stack["STACK_REVIEW_PORT"],
    }
    if name in mapped:
        return mapped[name]
    for inside, folder in VOLUMES.items():
        if value == inside or value.startswith(inside + "/"):
            return str(Path(stack["STACK_DIR"], folder, value[len(inside) :].lstrip("/")))
    return None


def stack_environment(service: str, environ: dict[str, str]) -> dict[str, str]:
    """`environ` plus compose's LINEGUARD_* settings for `service`, mapped to this machine."""
    variables = dotenv(ROOT / ".env.example") | dotenv(ROOT / ".env") | environ
    stack = {name: environ.get(name, "") for name in ("STACK_DIR", "STACK_KAFKA_PORT", "STACK_DATABASE_URL")}
    stack |= {"STACK_METRICS_PORT": environ.get("STACK_METRICS_PORT", "9100")}
    stack |= {"STACK_REVIEW_PORT": environ.get("STACK_REVIEW_PORT", "8080")}
    result = dict(environ)
    for name, raw in compose_environment(service).items():
        mapped = host_value(name, raw, stack)
        result[name] = mapped if mapped is not None else interpolate(raw, variables)
    return result


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        raise SystemExit(__doc__)
    service, rest = argv[0], argv[1:]
    environment = stack_environment(service, dict(os.environ))
    if not rest:
        for name in sorted(compose_environment(service)):
            print(f"{name}={environment[name]}")
        return
    if rest == ["--compose-command"]:
        rest = ["--", *compose_command(service)]
    if rest[0] != "--" or len(rest) < 2:
        raise SystemExit(__doc__)
    os.execvpe(rest[1], rest[1:], environment)


if __name__ == "__main__":
    main(sys.argv[1:])
