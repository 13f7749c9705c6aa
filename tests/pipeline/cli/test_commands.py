"""CLI commands (`broker`, `simulate`, `consume`) and the Prometheus endpoint, against the real broker."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO_ROOT, line_settings, make_topics, subprocess_env
from helpers import ConsumerThread, db_totals, wait_for
from typer.testing import CliRunner

from pipeline.cli.app import build_app
from pipeline.dev.broker import free_port
from pipeline.storage.engine import migrate

pytestmark = pytest.mark.integration


def test_broker_command_prints_its_address_and_serves() -> None:
    from kafka import KafkaAdminClient

    port = free_port()
    command = [sys.executable, "-m", "pipeline", "broker", "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        assert address == f"127.0.0.1:{port}"
        admin = KafkaAdminClient(bootstrap_servers=address)
        assert {"lineguard.frames", "lineguard.dlq", "lineguard.alerts"} <= set(admin.list_topics())
        admin.close()
    finally:
        process.terminate()
        process.wait(15)
    # SIGTERM stopped the broker child too: nothing listens on its port any more
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def test_simulate_then_consume_with_metrics(bootstrap: str, tmp_path: Path, tiny_model: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    port = free_port()
    settings = line_settings(bootstrap, url, tiny_model, metrics_port=port)
    make_topics(settings)
    migrate(url)
    sent = CliRunner().invoke(
        build_app(),
        [
            "simulate",
            "--bootstrap",
            bootstrap,
            "--topic",
            settings.frames_topic,
            "--count",
            "30",
            "--rate",
            "0",
            "--camera",
            "cam-9",
            "--defect-rate",
            "0.3",
            "--seed",
            "1",
        ],
    )
    assert sent.exit_code == 0, sent.output
    assert sent.output.startswith("sent 30 frames")

    consumer = ConsumerThread(settings).start()
    try:
        wait_for(lambda: db_totals(url)[0] == 30, timeout=60, what="30 frames stored")
        # Counters move just after the commit that makes the rows visible: wait for them too.
        wait_for(lambda: 'lineguard_frames_total{camera="cam-9"} 30.0' in scrape(port), timeout=10, what="metrics")
        body = scrape(port)
    finally:
        stats = consumer.stop()
    assert 'lineguard_frames_total{camera="cam-9"} 30.0' in body
    assert f'lineguard_defects_total{{camera="cam-9"}} {float(stats.defects)}' in body
    assert 'provider="CPUExecutionProvider"' in body and 'version="1"' in body
    assert "lineguard_batch_seconds_count" in body and "lineguard_consumer_lag" in body


def test_consume_without_a_model_is_one_readable_error(bootstrap: str, tmp_path: Path) -> None:
    env = {k: v for k, v in subprocess_env().items() if k != "LINEGUARD_MODEL_PATH"}
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "consume",
        "--bootstrap",
        bootstrap,
        "--db",
        f"sqlite:///{tmp_path / 'x.db'}",
        "--idle-exit",
        "1",
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "error: no model: pass --model or set LINEGUARD_MODEL_PATH"
