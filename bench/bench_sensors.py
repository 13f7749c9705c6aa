"""Sensor throughput on the real broker: readings/s through the consumer (windowing, scoring, window state and
anomalies in each batch transaction) against raw consumption and raw ONNX scoring of the same windows.

    python bench/bench_sensors.py                          # SKAB anomaly-free.csv x 4 devices, 1 and 10 samples/record
    python bench/bench_sensors.py --model sensor.onnx      # a trained sensor model (training: lineguard train-sensors)

Without --model: a random 1-D conv autoencoder (8 -> 32 -> 32 -> 8 channels, kernel 7, window 128, stride 32)
stands in. Prints a table and writes bench/results/sensors-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.consumer import run_consumer  # noqa: E402
from pipeline.contract import (  # noqa: E402
    SENSOR_INPUT_NAME,
    SENSOR_NORMALIZATION,
    SENSOR_RESIZE_MODE,
    ModelMetadata,
    ScoreStats,
    SensorSpec,
)
from pipeline.dev.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from pipeline.dev.sensorsim import Recording, blocks, read_csv  # noqa: E402
from pipeline.sensors.model import SensorModel  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

SKAB = REPO.parent / "shared" / "data" / "skab" / "data" / "anomaly-free" / "anomaly-free.csv"
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 10000}


def stand_in(path: Path, recording: Recording, window: int, stride: int, width: int = 32) -> Path:
    """A random 1-D conv autoencoder with the contract's in-graph normalisation; calibrated to flag ~1 % of windows."""
    rng = np.random.default_rng(0)
    c = len(recording.channels)
    mean, std = recording.values.mean(axis=0), recording.values.std(axis=0) + 1e-6
    init = [
        numpy_helper.from_array(mean.reshape(1, c, 1).astype(np.float32), "mean"),
        numpy_helper.from_array(std.reshape(1, c, 1).astype(np.float32), "std"),
    ]
    nodes = [
        helper.make_node("Sub", [SENSOR_INPUT_NAME, "mean"], ["x0"]),
        helper.make_node("Div", ["x0", "std"], ["z"]),
    ]
    shapes = [(width, c), (width, width), (c, width)]
    current = "z"
    for i, (out, inp) in enumerate(shapes):
        init += [
            numpy_helper.from_array(
                (rng.standard_normal((out, inp, 7)) / np.sqrt(inp * 7)).astype(np.float32), f"w{i}"
            ),
            numpy_helper.from_array(np.zeros(out, np.float32), f"b{i}"),
        ]
        nodes.append(helper.make_node("Conv", [current, f"w{i}", f"b{i}"], [f"c{i}"], pads=[3, 3]))
        current = f"c{i}"
        if i < len(shapes) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"r{i}"]))
            current = f"r{i}"
    nodes += [
        helper.make_node("Mul", [current, "std"], ["scaled"]),
        helper.make_node("Add", ["scaled", "mean"], ["reconstruction"]),
        helper.make_node("Sub", ["z", current], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["anomaly_map"]),
        helper.make_node("ReduceMean", ["anomaly_map"], ["score"], axes=[1, 2], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "sensor_conv_ae",
        [helper.make_tensor_value_info(SENSOR_INPUT_NAME, TensorProto.FLOAT, ["N", c, window])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
            for name, shape in (
                ("reconstruction", ["N", c, window]),
                ("anomaly_map", ["N", c, window]),
                ("score", ["N"]),
            )
        ],
        initializer=init,
    )
    meta = ModelMetadata(
        model_name="bench-sensor-cae",
        model_version="1",
        architecture=f"random conv1d autoencoder w{width}",
        kind="sensor",
        input_size=window,
        input_channels=c,
        resize_mode=SENSOR_RESIZE_MODE,
        image_threshold=1e9,
        pixel_threshold=1e9,
        image_score_stats=ScoreStats(n=0, mean=0.0, std=0.0),
        pixel_score_stats=ScoreStats(n=0, mean=0.0, std=0.0),
        train_data_digest="none",
        created_at=datetime.now(UTC).isoformat(),
        normalization=SENSOR_NORMALIZATION,
        sensor=SensorSpec(recording.channels, window, stride, tuple(mean.tolist()), tuple(std.tolist()), 1.0),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, meta.to_props())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    scores = SensorModel(path, prefer_gpu=False).score(windows_of(recording, window, stride)).score
    path.with_name(path.name + ".thresholds.json").write_text(
        json.dumps({"image_threshold": float(np.quantile(scores, 0.99)), "pixel_threshold": 1e9})
    )
    return path


def windows_of(recording: Recording, window: int, stride: int) -> np.ndarray:
    starts = range(0, len(recording.values) - window + 1, stride)
    return np.stack([recording.values[s : s + window].T for s in starts])


def raw_consume(settings: Settings, count: int) -> float:
    """kafka-python alone: manual assignment, no processing; records/s."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.consumer_options(), enable_auto_commit=False, group_id=None)
    partition = TopicPartition(settings.frames_topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    consumer.poll(timeout_ms=0)
    seen, start = 0, time.perf_counter()
    while seen < count:
        seen += sum(len(b) for b in consumer.poll(timeout_ms=500, max_records=500).values())
    elapsed = time.perf_counter() - start
    consumer.close()
    return count / elapsed


def raw_scoring(model_path: Path, recording: Recording, batch: int = 256) -> float:
    """onnxruntime alone on the windows, in the consumer's chunk size; windows/s."""
    model = SensorModel(model_path, prefer_gpu=False)
    spec = model.spec
    windows = windows_of(recording, spec.window_length, spec.window_stride)
    model.score(windows[:batch])
    start = time.perf_counter()
    for offset in range(0, len(windows), batch):
        model.score(windows[offset : offset + batch])
    return len(windows) / (time.perf_counter() - start)


def publish(settings: Settings, recording: Recording, devices: int, block: int) -> int:
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings.producer_options(), acks="all", linger_ms=5, batch_size=1 << 20)
    sent = 0
    for device in range(devices):
        for message in blocks(recording, f"sensor-{device}", block=block):
            producer.send(settings.frames_topic, key=message.key, value=message.value, headers=message.headers)
            sent += 1
    producer.flush()
    producer.close()
    return sent


def run(bootstrap: str, work: Path, model: Path, recording: Recording, devices: int, block: int, batch: int) -> dict:
    topic = f"bench-sensors-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        bootstrap_servers=bootstrap,
        frames_topic=topic,
        dlq_topic=f"{topic}-dlq",
        group_id=topic,
        database_url=f"sqlite:///{work / (topic + '.db')}",  # type: ignore[arg-type]
        sensor_model_path=model,
        prefer_gpu=False,
        batch_size=batch,
        alert_log=False,
        **FAST_GROUP,  # type: ignore[arg-type]
    )
    ensure_topics(settings.kafka_common(), [topic, settings.dlq_topic])
    records = publish(settings, recording, devices, block)
    consume = raw_consume(settings, records)
    stats = run_consumer(settings, max_messages=records)
    return {
        "samples_per_record": block,
        "records": records,
        "readings": stats.readings,
        "channels": len(recording.channels),
        "windows": stats.windows,
        "anomalies": stats.sensor_anomalies,
        "dlq": stats.dlq,
        "raw_consume_records_per_s": consume,
        "end_to_end_readings_per_s": stats.readings_per_s,
        "end_to_end_records_per_s": stats.sensor_records / (stats.active_seconds or stats.seconds),
        "end_to_end_windows_per_s": stats.windows / (stats.active_seconds or stats.seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=SKAB)
    parser.add_argument("--model", type=Path, help="a LineGuard sensor .onnx (default: a random stand-in)")
    parser.add_argument("--devices", type=int, default=4, help="the CSV is replayed once per device")
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 10], help="samples per record, one run each")
    parser.add_argument("--batch-size", type=int, default=256, help="records per consumer batch")
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="lg-bench-sensors-"))
    recording = read_csv(args.csv)
    model = args.model or stand_in(work / "sensor.onnx", recording, args.window, args.stride)
    spec = SensorModel(model, prefer_gpu=False).spec
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "csv": str(args.csv),
        "model": str(args.model or "random conv1d autoencoder w32 (stand-in)"),
        "window": spec.window_length,
        "stride": spec.window_stride,
        "batch_size": args.batch_size,
        "raw_scoring_windows_per_s": raw_scoring(model, recording),
    }
    results["raw_scoring_readings_per_s"] = results["raw_scoring_windows_per_s"] * spec.window_stride
    with EmbeddedBroker() as broker:
        results["runs"] = [
            run(broker.bootstrap, work, model, recording, args.devices, block, args.batch_size) for block in args.blocks
        ]
    print(f"\nSensor benchmark, {results['machine']}, window {spec.window_length} stride {spec.window_stride}")
    print(
        f"  raw ONNX scoring: {results['raw_scoring_windows_per_s']:,.0f} windows/s "
        f"({results['raw_scoring_readings_per_s']:,.0f} readings/s at the stride)"
    )
    for r in results["runs"]:
        print(
            f"  {r['samples_per_record']:>3} samples/record: raw consume {r['raw_consume_records_per_s']:,.0f} rec/s;"
            f" end to end {r['end_to_end_readings_per_s']:,.0f} readings/s ({r['end_to_end_records_per_s']:,.0f} rec/s,"
            f" {r['end_to_end_windows_per_s']:,.0f} windows/s), {r['windows']} windows, {r['anomalies']} anomalies"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sensors-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
