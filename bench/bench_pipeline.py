"""Pipeline throughput on the real broker: end to end vs raw Kafka consumption, raw ONNX scoring and a naive loop.

    python bench/bench_pipeline.py                      # the default model; ~5 minutes on 2 cores
    python bench/bench_pipeline.py --stand-in           # the random 4-layer conv autoencoder of earlier runs
    python bench/bench_pipeline.py --stand-in --width 4 --formats jpeg,png,raw --model a.onnx --model a.int8.onnx
    python bench/bench_pipeline.py --memory-frames 200000   # adds the long RSS run

Each model and frame encoding gets one row, side by side in one run: raw scoring, raw decode (the consumer's decode
threads), end to end, their ratios, the consumer's CPU per frame outside the model (its process CPU per frame end to
end minus onnxruntime's per frame alone) and frames/s per core; latency at half load per model.

Prints a table and writes bench/results/pipeline-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_models import calibrate, conv_autoencoder, default_model  # noqa: E402

from pipeline.consumer import run_consumer  # noqa: E402
from pipeline.decode import decode_record  # noqa: E402
from pipeline.dev.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from pipeline.dev.simulator import encode_sim_frame, publish_frames, synthetic_frames  # noqa: E402
from pipeline.inference import OnnxModel  # noqa: E402
from pipeline.results import FrameResult  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.storage.engine import open_database  # noqa: E402
from pipeline.wire import JPEG, PNG, RAW, FrameLimits  # noqa: E402

LIMITS = FrameLimits(max_bytes=1 << 24, max_pixels=1 << 26)  # the raw-scoring and naive loops' decode limits

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 10000}


def settings_for(bootstrap: str, topic: str, db_url: str, model: Path, batch_size: int, **line: Any) -> Settings:
    """The consumer's settings for one phase; `line`: further settings (onnxruntime's threads, ...)."""
    return Settings(
        bootstrap_servers=bootstrap,
        frames_topic=topic,
        dlq_topic=f"{topic}-dlq",
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        database_url=db_url,
        model_path=model,
        batch_size=batch_size,
        alert_log=False,
        **FAST_GROUP,
        **line,
    )


def raw_consume(settings: Settings, count: int) -> tuple[float, list[Any]]:
    """(a) kafka-python alone: manual assignment, no processing."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.consumer_options(), enable_auto_commit=False, group_id=None)
    partition = TopicPartition(settings.frames_topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    records: list[Any] = []
    consumer.poll(timeout_ms=0)
    start = time.perf_counter()
    while len(records) < count:
        for batch in consumer.poll(timeout_ms=500, max_records=500).values():
            records.extend(batch)
    elapsed = time.perf_counter() - start
    consumer.close()
    return count / elapsed, records[:count]


def raw_scoring(model_path: Path, records: list[Any], batch_size: int, repeats: int = 3) -> tuple[float, float]:
    """(b) onnxruntime alone on the already decoded and preprocessed frames: frames/s and CPU ms per frame, the best
    of `repeats` passes (the model's capacity; a pass that another process interrupted says less about it)."""
    model = OnnxModel(model_path)
    inputs = np.stack([decode_record(r, model, LIMITS).model_input for r in records])
    model.warm_up(batch_size)
    passes = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        for offset in range(0, len(inputs), batch_size):
            model.score(inputs[offset : offset + batch_size])
        passes.append((time.perf_counter() - start, time.process_time() - cpu))
    elapsed, cpu = min(passes)
    return len(inputs) / elapsed, 1000.0 * cpu / len(inputs)


def raw_decode(model_path: Path, records: list[Any], threads: int) -> float:
    """Decode and preprocess alone, on as many threads as the consumer's decode pool: frames/s."""
    from concurrent.futures import ThreadPoolExecutor

    model = OnnxModel(model_path)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda r: decode_record(r, model, LIMITS), records[:64]))  # warm
        start = time.perf_counter()
        list(pool.map(lambda r: decode_record(r, model, LIMITS), records))
    return len(records) / (time.perf_counter() - start)


def naive_loop(settings: Settings, count: int) -> float:
    """(c) one message at a time: poll one, decode, one inference, one insert + DB commit, one Kafka commit."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from pipeline.storage.store import ModelInfo, write_batch
    from pipeline.verdict import judge

    model = OnnxModel(settings.model_path)  # type: ignore[arg-type]
    model.warm_up(1)
    _, sessions = open_database(settings.db_url)
    consumer = KafkaConsumer(
        **settings.consumer_options(),
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=1,
        **FAST_GROUP,
    )
    consumer.subscribe([settings.frames_topic])
    info = ModelInfo("bench", "1")
    done, start = 0, None
    while done < count:
        for tp, batch in consumer.poll(timeout_ms=500, max_records=1).items():
            for record in batch:
                start = start or time.perf_counter()
                results = judge(model, [decode_record(record, model, LIMITS)], True)
                with sessions() as session, session.begin():
                    write_batch(
                        session,
                        settings.group_id,
                        results,
                        {(tp.topic, tp.partition): record.offset + 1},
                        [],
                        [],
                        info,
                        60,
                    )
                consumer.commit({TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(record.offset + 1, "", -1)})
                done += 1
    elapsed = time.perf_counter() - (start or time.perf_counter())
    consumer.close(autocommit=False)
    return count / elapsed


def end_to_end(settings: Settings, count: int) -> tuple[float, float]:
    """(d) the real consumer (run_consumer) in its steady state, from its first committed batch to its last (start-up
    and the group join excluded): frames/s, and the consumer process's CPU ms per frame (the broker is a child
    process, not counted)."""
    marks: list[tuple[int, float, float]] = []
    seen = [0]

    def on_batch(results: list[FrameResult]) -> None:
        seen[0] += len(results)
        marks.append((seen[0], time.process_time(), time.perf_counter()))

    run_consumer(settings, max_messages=count, on_batch=on_batch)
    (first, cpu_first, at_first), (last, cpu_last, at_last) = marks[0], marks[-1]
    frames = max(1, last - first)
    return frames / (at_last - at_first), 1000.0 * (cpu_last - cpu_first) / frames


def latency_run(settings: Settings, rate: float, seconds: float) -> dict[str, float]:
    """Publish at `rate` frames/s while the consumer runs; capture-to-verdict latency percentiles."""
    latencies: list[float] = []
    stop = threading.Event()
    count = int(rate * seconds)
    consumer = threading.Thread(
        target=run_consumer,
        kwargs={"settings": settings, "stop": stop, "on_batch": lambda rs: latencies.extend(r.latency_ms for r in rs)},
        daemon=True,
    )
    consumer.start()
    time.sleep(5)  # let the group join finish before frames start
    publish_frames(settings, count=count, rate=rate, seed=7, defect_rate=0.05)
    deadline = time.monotonic() + 60
    while len(latencies) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    consumer.join(30)
    values = np.array(latencies)
    return {
        "rate": rate,
        "frames": len(values),
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
    }


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def publish_cycled(settings: Settings, count: int, distinct: int = 256) -> None:
    """Publish `count` frames cycling through `distinct` pre-encoded ones: the producer must outpace the consumer."""
    from kafka import KafkaProducer

    frames = [
        encode_sim_frame(f, "cam-1", "line-1", i)
        for i, f in enumerate(itertools.islice(synthetic_frames(5, 256, 0.05), distinct))
    ]
    producer = KafkaProducer(**settings.producer_options(), linger_ms=20, batch_size=1 << 20)
    for index in range(count):
        frame = frames[index % distinct]
        producer.send(settings.frames_topic, key=frame.key, value=frame.value, headers=frame.headers)
    producer.flush()
    producer.close()


def memory_run(settings: Settings, frames: int) -> dict[str, float]:
    """A long run: a producer thread feeds the topic while the consumer runs; RSS sampled along the way."""
    samples: list[tuple[int, float]] = []
    seen = [0]

    def on_batch(results: list[FrameResult]) -> None:
        before = seen[0]
        seen[0] += len(results)
        if seen[0] // 10_000 != before // 10_000:
            samples.append((seen[0], rss_mb()))

    producer = threading.Thread(target=publish_cycled, args=(settings, frames), daemon=True)
    producer.start()
    stats = run_consumer(settings, max_messages=frames, on_batch=on_batch)
    producer.join()
    start = next((mb for n, mb in samples if n >= 10_000), samples[0][1] if samples else float("nan"))
    return {
        "frames": stats.frames,
        "rss_start_mb": start,
        "rss_end_mb": samples[-1][1] if samples else rss_mb(),
        "fps": stats.frames_per_s,
        "samples": samples,
    }  # type: ignore[dict-item]


FORMATS = {"jpeg": JPEG, "png": PNG, "raw": RAW}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--naive-frames", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        help="a LineGuard .onnx; repeat to measure several side by side (default: the default model, trained first)",
    )
    parser.add_argument("--train-minutes", type=float, default=2.0, help="budget for training the default model")
    parser.add_argument("--stand-in", action="store_true", help="add a random 4-layer conv autoencoder")
    parser.add_argument("--width", type=int, default=32, help="channels of the stand-in autoencoder's first layer")
    parser.add_argument("--formats", default="jpeg", help="frame encodings to publish, comma-separated: jpeg,png,raw")
    parser.add_argument(
        "--inference-threads", type=int, default=0, help="the consumer's onnxruntime threads (0: one per core)"
    )
    parser.add_argument(
        "--spinning", action=argparse.BooleanOptionalAction, default=False, help="the consumer's onnxruntime spinning"
    )
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--memory-frames", type=int, default=0, help="add a long run of this many frames for RSS")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # kafka-python warns when its IO thread waits for the GIL, which the producer thread in the memory run causes.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if unknown := [f for f in formats if f not in FORMATS]:
        parser.error(f"unknown format(s) {unknown}; choose from {sorted(FORMATS)}")

    work = Path(tempfile.mkdtemp(prefix="lg-bench-"))
    models: list[tuple[str, Path]] = []
    if args.stand_in:
        stand_in = conv_autoencoder(work / "conv_ae.onnx", width=args.width)
        calibrate(stand_in, flagged=0.05)
        models.append((f"random conv4 autoencoder 256x256x1, width {args.width}", stand_in))
    for given in args.model or ([] if args.stand_in else [default_model(work, args.train_minutes)]):
        # A copy whose threshold flags about as many of the synthetic frames as the stream has defects, as the
        # stand-in's: the defects' evidence costs per flagged frame, so every model is measured at the same share.
        path = work / f"{len(models)}-{given.name}"
        shutil.copyfile(given, path)
        calibrate(path, flagged=0.05)
        meta = OnnxModel(path).metadata
        models.append((f"{given.name}: {meta.architecture} {meta.input_size}px {meta.precision}", path))
    cores = os.cpu_count() or 1
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {cores} cores, {platform.system()}",
        "frames": args.frames,
        "batch_size": args.batch_size,
        "inference_threads": args.inference_threads,
        "inference_spinning": args.spinning,
        "runs": [],
    }
    with EmbeddedBroker() as broker:

        def fresh(name: str, model: Path) -> Settings:
            topic = f"bench-{name}-{uuid.uuid4().hex[:6]}"
            db = f"sqlite:///{work / (topic + '.db')}"
            line = {"inference_threads": args.inference_threads, "inference_spinning": args.spinning}
            s = settings_for(broker.bootstrap, topic, db, model, args.batch_size, **line)
            ensure_topics(s.kafka_common(), [topic, s.dlq_topic])
            return s

        for model_name, model in models:
            for index, fmt in enumerate(formats):
                run: dict[str, Any] = {"model": model_name, "format": fmt}
                shared = fresh(f"e2e-{fmt}", model)
                sent = publish_frames(
                    shared, count=args.frames, rate=None, seed=1, defect_rate=0.05, content_type=FORMATS[fmt]
                )
                run["mean_frame_bytes"] = sent.bytes_sent / sent.sent
                run["raw_consume_fps"], records = raw_consume(shared, args.frames)
                run["raw_decode_fps"] = raw_decode(model, records, shared.decode_threads)
                run["raw_scoring_fps"], run["model_cpu_ms"] = raw_scoring(model, records, args.batch_size)
                run["end_to_end_fps"], run["e2e_cpu_ms"] = end_to_end(shared, args.frames)
                run["cpu_outside_model_us"] = 1000.0 * (run["e2e_cpu_ms"] - run["model_cpu_ms"])
                run["fps_per_core"] = run["end_to_end_fps"] / cores
                floor = min(run["raw_consume_fps"], run["raw_scoring_fps"], run["raw_decode_fps"])
                run["e2e_vs_floor"] = run["end_to_end_fps"] / floor
                run["e2e_vs_raw_scoring"] = run["end_to_end_fps"] / run["raw_scoring_fps"]
                if index == 0:  # latency depends on the model, barely on the encoding
                    half = run["end_to_end_fps"] / 2
                    run["latency_at_half_peak"] = latency_run(fresh("latency", model), half, args.latency_seconds)
                    run["batch_scoring_ms"] = 1000.0 * args.batch_size / run["raw_scoring_fps"]
                results["runs"].append(run)
        first_model = models[0][1]
        naive = fresh("naive", first_model)
        publish_frames(naive, count=args.naive_frames, rate=None, seed=1, defect_rate=0.05)
        results["naive_fps"] = naive_loop(naive, args.naive_frames)
        if args.memory_frames:
            results["memory"] = memory_run(fresh("memory", first_model), args.memory_frames)
    results["poll_timeout_ms"] = Settings.model_fields["poll_timeout_ms"].default
    print_table(results)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"pipeline-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


def print_table(r: dict[str, Any]) -> None:
    print(f"\nPipeline benchmark, {r['machine']}, {r['frames']} frames 256x256 per run, batch {r['batch_size']}")
    spin = "on" if r["inference_spinning"] else "off"
    print(f"  consumer's onnxruntime: {r['inference_threads'] or 'one per core'} threads, spinning {spin}")
    header = (
        "model / format",
        "raw score",
        "raw decode",
        "end to end",
        "e2e/score",
        "e2e/floor",
        "CPU out us",
        "fps/core",
    )
    rows = [
        (
            f"{run['model'][:48]} / {run['format']}",
            f"{run['raw_scoring_fps']:,.0f}",
            f"{run['raw_decode_fps']:,.0f}",
            f"{run['end_to_end_fps']:,.0f}",
            f"{run['e2e_vs_raw_scoring']:.2f}",
            f"{run['e2e_vs_floor']:.2f}",
            f"{run['cpu_outside_model_us']:,.0f}",
            f"{run['fps_per_core']:,.0f}",
        )
        for run in r["runs"]
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  "
            + "  ".join(
                cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for run in r["runs"]:
        if (lat := run.get("latency_at_half_peak")) is not None:
            bound = r["poll_timeout_ms"] + 2 * run["batch_scoring_ms"]
            print(
                f"  latency at {lat['rate']:.0f} frames/s, {run['model'][:40]}: p50 {lat['p50_ms']:.0f} ms, "
                f"p99 {lat['p99_ms']:.0f} ms (bound: poll window + 2 batches' scoring = {bound:.0f} ms)"
            )
    print(f"  naive loop (one message at a time): {r['naive_fps']:,.0f} frames/s")
    if "memory" in r:
        m = r["memory"]
        print(f"  RSS over {m['frames']:,} frames: {m['rss_start_mb']:.0f} MB -> {m['rss_end_mb']:.0f} MB")


if __name__ == "__main__":
    main()
