"""End to end on the real broker and real databases: frames in, defects out, bad records to the DLQ."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from conftest import line_settings, make_topics
from helpers import ConsumerThread, db_totals, expected_frames, iou, read_topic
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.cli import defects as defects_cli
from pipeline.deadletter import H_REASON, H_SOURCE_OFFSET, H_SOURCE_PARTITION, H_SOURCE_TOPIC, H_VALUE_DROPPED
from pipeline.dev.simulator import publish_frames, synthetic_frame
from pipeline.frames.store import KINDS, FrameStore, object_key, read_defect_image
from pipeline.results import Source
from pipeline.storage.engine import open_database
from pipeline.storage.tables import Defect
from pipeline.wire import PNG, encode_frame

pytestmark = pytest.mark.integration


def test_frames_in_defects_out_with_the_right_boxes(
    bootstrap: str, db_url: str, tiny_model: Path, tmp_path: Path
) -> None:
    settings = line_settings(bootstrap, db_url, tiny_model)
    frames = FrameStore(settings.frame_store_url)  # the test's own folder (conftest)
    make_topics(settings)
    sent = publish_frames(settings, count=48, rate=None, seed=3, defect_rate=0.3)
    stats = ConsumerThread(settings, idle_exit=1.0).start().join()

    truth = expected_frames(seed=3, count=48, defect_rate=0.3)
    injected = {seq for seq, f in enumerate(truth) if f.ground_truth != "good"}
    assert sent.defects_injected == len(injected) > 5
    assert (stats.frames, stats.dlq, stats.defects) == (48, 0, len(injected))
    _, sessions = open_database(db_url)
    with sessions() as session:
        defects = session.scalars(select(Defect).order_by(Defect.seq)).all()
        assert {d.seq for d in defects} == injected
        for defect in defects:
            box = truth[defect.seq].bbox
            assert box is not None and defect.regions, defect.seq
            # The test model's 7x7 blur spreads a defect by 3 px on each side: edges must agree within 4 px.
            top = defect.regions[0]
            edges = (top["x"], top["y"], top["x"] + top["w"], top["y"] + top["h"])
            truth_edges = (box[0], box[1], box[0] + box[2], box[1] + box[3])
            assert max(abs(a - b) for a, b in zip(edges, truth_edges, strict=True)) <= 4, (defect.seq, box, top)
            assert iou(box, (top["x"], top["y"], top["w"], top["h"])) > 0.5
            assert defect.score > defect.threshold and defect.model_version == "1"
            # the images are frame store objects the row references, no longer blobs in it
            assert defect.frame is None and defect.overlay_png is None and defect.restored_png is None
            frame, overlay, restored_png = (read_defect_image(defect, kind) for kind in KINDS)
            assert (
                frame is not None
                and frame[1] == "image/jpeg"
                and defect.frame_uri == frames.uri(object_key(defect_source(defect), "frame", "image/jpeg"))
            )
            assert overlay is not None and overlay[0].startswith(b"\x89PNG")
            # the model's restored frame (the test model's blur) at model size, next to the original
            assert restored_png is not None
            restored = cv2.imdecode(np.frombuffer(restored_png[0], np.uint8), cv2.IMREAD_UNCHANGED)
            assert restored is not None and restored.shape == (256, 256)
        first_id = defects[0].id
    assert db_totals(db_url)[0] == 48

    runner = CliRunner()
    app = cli_app()
    listed = runner.invoke(app, ["defects", "list", "--db", db_url, "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.output)) == len(injected)
    table = runner.invoke(app, ["defects", "list", "--db", db_url, "--min-score", "0"])
    assert table.exit_code == 0 and f"{len(injected)} defects" in table.output
    csv_out = runner.invoke(app, ["defects", "list", "--db", db_url, "--format", "csv", "--camera", "nope"])
    assert csv_out.exit_code == 0 and csv_out.output.strip() == "id"
    restored_file = str(tmp_path / "restored.png")
    shown = runner.invoke(app, ["defects", "show", str(first_id), "--db", db_url, "--save-restored", restored_file])
    assert shown.exit_code == 0, shown.output
    assert Path(restored_file).read_bytes().startswith(b"\x89PNG")
    assert json.loads(shown.output)["regions"]
    reviewed = runner.invoke(
        app, ["defects", "review", str(first_id), "--status", "confirmed", "--label", "spot", "--db", db_url]
    )
    assert reviewed.exit_code == 0, reviewed.output
    confirmed = runner.invoke(app, ["defects", "list", "--db", db_url, "--status", "confirmed", "--format", "json"])
    assert [(d["id"], d["label"]) for d in json.loads(confirmed.output)] == [(first_id, "spot")]
    bad = runner.invoke(app, ["defects", "review", str(first_id), "--status", "maybe", "--db", db_url])
    assert bad.exit_code != 0 and "status must be one of" in str(bad.exception)


def defect_source(defect: Defect) -> Source:
    return Source(defect.source_topic, defect.source_partition, defect.source_offset)


def cli_app() -> typer.Typer:
    app = typer.Typer()
    defects_cli.register(app)
    return app


def test_malformed_records_go_to_the_dlq_and_good_frames_keep_flowing(
    bootstrap: str, tmp_path: Path, tiny_model: Path
) -> None:
    from kafka import KafkaProducer

    settings = line_settings(bootstrap, f"sqlite:///{tmp_path / 'dlq.db'}", tiny_model, max_frame_bytes=100_000)
    make_topics(settings)
    rng = np.random.default_rng(0)
    good = encode_frame(synthetic_frame(rng).image, camera_id="cam-1")
    png = encode_frame(synthetic_frame(rng).image, camera_id="cam-1", content_type=PNG)

    def without(name: str) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in good.headers if k != name]

    def with_header(name: str, value: bytes) -> list[tuple[str, bytes]]:
        return [*without(name), (name, value)]

    noise = rng.integers(0, 255, size=150_000, dtype=np.uint8).tobytes()
    bad = {
        "truncated jpeg": (good.value[: len(good.value) // 2], good.headers, "corrupt or truncated"),
        "wrong shape": (good.value, with_header("shape", b"128x128"), "shape header (128, 128)"),
        "missing camera": (good.value, without("camera-id"), "missing header 'camera-id'"),
        "no headers": (good.value, [], "missing header"),
        "bad timestamp": (good.value, with_header("capture-ts-ms", b"noon"), "bad header 'capture-ts-ms'"),
        "empty value": (b"", good.headers, "empty value"),
        "oversized": (noise, good.headers, "exceeds max_frame_bytes"),
    }
    producer = KafkaProducer(**settings.producer_options())
    sequence: list[str] = []
    for name, (value, headers, _) in bad.items():
        for _ in range(2):  # good frames before and after every bad one
            producer.send(settings.frames_topic, key=b"cam-1", value=good.value, headers=good.headers)
            sequence.append("good")
        producer.send(settings.frames_topic, key=b"cam-1", value=value, headers=headers)
        sequence.append(name)
    producer.send(settings.frames_topic, key=b"cam-1", value=png.value, headers=png.headers)
    sequence.append("good")
    producer.flush()
    producer.close()

    stats = ConsumerThread(settings, idle_exit=1.0).start().join()
    assert (stats.frames, stats.dlq) == (sequence.count("good"), len(bad))
    assert db_totals(settings.db_url)[0] == sequence.count("good")

    dead = read_topic(settings, settings.dlq_topic, expected=len(bad))
    assert len(dead) == len(bad)
    for record in dead:
        headers = dict(record.headers)
        offset = int(headers[H_SOURCE_OFFSET])
        name = sequence[offset]
        assert headers[H_SOURCE_TOPIC].decode() == settings.frames_topic
        assert headers[H_SOURCE_PARTITION] == b"0"
        assert bad[name][2] in headers[H_REASON].decode(), (name, headers[H_REASON])
        if name == "oversized":  # too large to forward: coordinates and length only
            assert record.value == b"" and headers[H_VALUE_DROPPED] == b"150000"
        else:
            assert record.value == bad[name][0] or (not record.value and not bad[name][0])


def test_a_batch_polled_before_a_rebalance_is_left_to_the_partitions_owner() -> None:
    """Its records are neither judged, dead-lettered nor written: the owner starts from the database offsets."""
    from concurrent.futures import Future
    from types import SimpleNamespace

    from pipeline.consumer import LineConsumer, Polled

    dead_lettered: list[object] = []
    decoding: Future[object] = Future()
    line = LineConsumer.__new__(LineConsumer)  # only what `process` reads before it judges
    line.source = SimpleNamespace(revocations=1)  # type: ignore[assignment]
    line.sensors = SimpleNamespace(process=lambda *_: pytest.fail("sensor records judged"))  # type: ignore[assignment]
    line.dead_letter = lambda record, reason: dead_lettered.append(record)  # type: ignore[method-assign]
    record = SimpleNamespace(topic="frames", partition=0, offset=7)
    polled = Polled([record], [record], [], None, None, [decoding], revocations=0, started=0.0)  # type: ignore[list-item]
    assert line.process(polled) is None
    assert decoding.cancelled() and dead_lettered == []
