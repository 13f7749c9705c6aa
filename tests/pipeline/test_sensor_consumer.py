"""Sensor readings through the real broker into SQLite and PostgreSQL: windows, anomalies, alerts, restarts."""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import line_settings, make_topics
from helpers import ConsumerThread, read_topic, wait_for
from sqlalchemy import create_engine, func, select

from pipeline.deadletter import H_REASON
from pipeline.dev.broker import ensure_topics, free_port
from pipeline.dev.simulator import publish_frames
from pipeline.sensors.wire import EncodedFrame, encode_readings, parse_readings
from pipeline.settings import Settings
from pipeline.storage.engine import migrate, open_database
from pipeline.storage.tables import Alert, SensorAnomaly, SensorWindowState
from tests.pipeline.model_factory import build_tiny_sensor_model, tiny_sensor_metadata

CHANNELS = ("a", "b", "c")
T, STRIDE, PERIOD = 16, 8, 10.0
START = 1_800_000_000_000.0


@pytest.fixture(scope="module")
def sensor_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    meta = tiny_sensor_metadata(CHANNELS, T, STRIDE, window_threshold=1.0, mean=(5.0, 0.0, 0.0))
    return build_tiny_sensor_model(tmp_path_factory.mktemp("sensor") / "sensor.onnx", meta)


@pytest.fixture(scope="module")
def every_window_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every window an "anomaly" (threshold below any score), so each scored window leaves a row to check."""
    meta = tiny_sensor_metadata(CHANNELS, T, STRIDE, window_threshold=-1.0, mean=(5.0, 0.0, 0.0))
    return build_tiny_sensor_model(tmp_path_factory.mktemp("sensor-all") / "all.onnx", meta)


def starts_by_device(db_url: str) -> dict[str, list[int]]:
    """Window starts stored per device, in sample numbers."""
    out: dict[str, list[int]] = {}
    for row in anomalies(db_url):
        out.setdefault(row.device_id, []).append(round((row.window_start.timestamp() * 1000 - START) / PERIOD))
    return out


def readings(first: int, count: int, spike_at: int | None = None) -> np.ndarray:
    """Smooth signals (a linear ramp reconstructs exactly under the moving average) with an optional spike on c."""
    index = np.arange(first, first + count, dtype=np.float32)
    values = np.stack([5.0 + 0.01 * index, np.zeros_like(index), np.zeros_like(index)], axis=1)
    if spike_at is not None and first <= spike_at < first + count:
        values[spike_at - first, 2] = 8.0
    return values


def record(first: int, count: int, device: str = "dev-1", spike_at: int | None = None, **kwargs: Any) -> EncodedFrame:
    options: dict[str, Any] = {"device_id": device, "channels": CHANNELS, "period_ms": PERIOD}
    options.update(kwargs)
    return encode_readings(readings(first, count, spike_at), start_ms=START + PERIOD * first, **options)


def send(settings: Settings, messages: list[EncodedFrame]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings.producer_options(), acks="all")
    for m in messages:
        producer.send(settings.frames_topic, key=m.key, value=m.value, headers=m.headers)
    producer.flush()
    producer.close()


def scrape(port: int) -> str:
    """The consumer's /metrics, or "" while its server is not up yet."""
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:  # URLError: the consumer is still starting
        return ""


def anomalies(db_url: str) -> list[SensorAnomaly]:
    _, sessions = open_database(db_url)
    with sessions() as session:
        return list(session.scalars(select(SensorAnomaly).order_by(SensorAnomaly.window_start)))


def test_sensor_anomalies_recorded_with_alerts_and_bad_readings_dead_lettered(
    bootstrap: str, db_url: str, sensor_model: Path
) -> None:
    settings = line_settings(bootstrap, db_url, None, sensor_model_path=sensor_model, denoised_topic=None)
    make_topics(settings)
    good = [record(0, 20), record(20, 20, spike_at=30), record(40, 24)]
    bad = [
        _with_nan(record(64, 4)),
        record(64, 4, channels=("a", "b", "x")),  # channel c missing
        record(50, 4),  # out of order: device already at sample 63
        record(63, 1),  # duplicate of the last sample
    ]
    send(settings, good + bad)
    stats = ConsumerThread(settings, idle_exit=1.0).start().join()
    assert stats.sensor_records == 3 and stats.readings == 64 and stats.dlq == 4
    assert stats.windows == (64 - T) // STRIDE + 1 == 7
    rows = anomalies(db_url)
    # The spike at sample 30 lies in the windows starting at samples 16 and 24.
    assert [round((r.window_start.timestamp() * 1000 - START) / PERIOD) for r in rows] == [16, 24]
    assert stats.sensor_anomalies == 2 and all(r.device_id == "dev-1" and r.score > r.threshold for r in rows)
    assert rows[0].top_channels[0]["channel"] == "c" and rows[0].top_channels[0]["share"] > 0.9
    assert (rows[0].source_offset, rows[1].source_offset) == (1, 1)  # the record that completed each window
    assert (rows[0].model_name, rows[0].model_version) == ("tiny-sensor", "1")
    _, sessions = open_database(db_url)
    with sessions() as session:
        alerts = list(session.scalars(select(Alert)))
        assert alerts and all(a.camera_id == "dev-1" and a.payload["kind"] == "sensor" for a in alerts)
    reasons = [dict(r.headers)[H_REASON].decode() for r in read_topic(settings, settings.dlq_topic, 4)]
    assert reasons[0].startswith("non-finite reading (NaN/inf)")
    assert reasons[1].startswith("missing channels: 1 of the model's 3 (c)")
    assert reasons[2].startswith("out-of-order readings") and reasons[3].startswith("duplicate readings")


def _with_nan(message: EncodedFrame) -> EncodedFrame:
    values = np.frombuffer(message.value, dtype="<f4").copy()
    values[5] = np.nan
    return EncodedFrame(message.key, values.tobytes(), message.headers)


def test_windows_continue_exactly_across_a_restart(bootstrap: str, db_url: str, every_window_model: Path) -> None:
    settings = line_settings(bootstrap, db_url, None, sensor_model_path=every_window_model, batch_size=4)
    make_topics(settings)
    sizes = [5, 7, 3, 11, 2, 9, 6, 13, 4, 8]  # 68 samples, records cut across windows
    messages, first = [], 0
    for size in sizes:
        messages += [record(first, size, device="dev-r"), record(first, size, device="dev-s")]
        first += size
    send(settings, messages[:9])
    one = ConsumerThread(settings, idle_exit=1.0).start().join()
    send(settings, messages[9:])
    two = ConsumerThread(settings, idle_exit=1.0).start().join()
    expected = [STRIDE * k for k in range((68 - T) // STRIDE + 1)]
    assert one.windows > 0 and two.windows > 0 and one.windows + two.windows == 2 * len(expected)
    # Exact continuation: no window lost, shifted or scored twice.
    assert starts_by_device(db_url) == {"dev-r": expected, "dev-s": expected}
    _, sessions = open_database(db_url)
    with sessions() as session:
        states = list(session.scalars(select(SensorWindowState)))
    assert sorted(s.device_id for s in states) == ["dev-r", "dev-s"]
    assert all(len(s.readings) == 4 * 3 * (68 - expected[-1] - STRIDE) for s in states)
    # A third run replays nothing.
    three = ConsumerThread(settings, idle_exit=1.0).start().join()
    assert three.windows == 0 and len(anomalies(db_url)) == 2 * len(expected)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_windows_continue_exactly_across_a_rebalance(bootstrap: str, db_url: str, every_window_model: Path) -> None:
    settings = line_settings(bootstrap, db_url, None, sensor_model_path=every_window_model, batch_size=4)
    make_topics(settings, partitions=4)
    devices, sizes = [f"dev-{i}" for i in range(6)], [3, 5, 2, 7, 4, 6] * 8  # 216 samples per device

    def stream(device: str) -> None:
        from kafka import KafkaProducer

        producer, first = KafkaProducer(**settings.producer_options(), acks="all"), 0
        for size in sizes:
            m = record(first, size, device=device)
            producer.send(settings.frames_topic, key=m.key, value=m.value, headers=m.headers).get(10)
            first += size
            time.sleep(0.25)  # a steady stream for about 12 s, so the group changes while readings flow
        producer.close()

    migrate(db_url)
    engine = create_engine(db_url)

    def stored() -> int:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(SensorAnomaly)) or 0

    producers = [threading.Thread(target=stream, args=(d,), daemon=True) for d in devices]
    expected = [STRIDE * k for k in range((sum(sizes) - T) // STRIDE + 1)]
    first_consumer, second_consumer = ConsumerThread(settings).start(), ConsumerThread(settings)
    try:
        for producer in producers:
            producer.start()
        wait_for(lambda: stored() >= 20, timeout=60, what="first consumer working")
        second_consumer.start()
        before = stored()
        wait_for(lambda: stored() >= before + 40, timeout=60, what="both consumers working")
        first_consumer.stop()
        wait_for(lambda: stored() == len(devices) * len(expected), timeout=90, what="all windows")
    finally:
        first_consumer.stop_event.set()
        second_consumer.stop_event.set()
        for producer in producers:
            producer.join(30)
        engine.dispose()
    one, two = first_consumer.join(), second_consumer.join()
    assert starts_by_device(db_url) == {d: expected for d in devices}
    assert one.windows > 0 and two.windows > 0 and one.windows + two.windows == len(devices) * len(expected)
    assert one.dlq == two.dlq == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_frames_and_sensors_on_one_consumer(bootstrap: str, db_url: str, sensor_model: Path, tiny_model: Path) -> None:
    settings = line_settings(
        bootstrap,
        db_url,
        tiny_model,
        sensor_model_path=sensor_model,
        denoised_topic=f"denoised-{uuid.uuid4().hex[:8]}",
        metrics_port=(port := free_port()),
    )
    make_topics(settings)
    ensure_topics(settings.kafka_common(), [settings.denoised_topic or ""], 1)
    publish_frames(settings, count=6, defect_rate=0.5, seed=3)
    send(settings, [record(0, 20, spike_at=12), record(20, 12)])
    consumer = ConsumerThread(settings).start()
    try:
        wait_for(lambda: 'lineguard_sensor_windows_total{device="dev-1"} 3.0' in scrape(port), what="window metrics")
        body = scrape(port)
    finally:
        stats = consumer.stop()
    assert "lineguard_sensor_readings_total 32.0" in body and 'lineguard_sensor_anomalies_total{device="dev-1"}' in body
    assert stats.frames == 6 and stats.defects > 0 and stats.windows == 3 and stats.dlq == 0
    assert stats.sensor_anomalies >= 1
    denoised = read_topic(settings, settings.denoised_topic or "", 3)
    assert len(denoised) == 3
    block = parse_readings(denoised[0].value, denoised[0].headers, 1 << 20)
    assert block.values.shape == (T, 3) and block.device_id == "dev-1"
    assert dict(denoised[0].headers)["source-offset"] == b"6"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_consumer_with_one_model_dead_letters_the_other_kind(
    bootstrap: str, db_url: str, sensor_model: Path, tiny_model: Path
) -> None:
    sensors_only = line_settings(bootstrap, db_url, None, sensor_model_path=sensor_model)
    make_topics(sensors_only)
    publish_frames(sensors_only, count=2)
    send(sensors_only, [record(0, 16)])
    stats = ConsumerThread(sensors_only, idle_exit=1.0).start().join()
    assert (stats.frames, stats.windows, stats.dlq) == (0, 1, 2)
    reasons = {dict(r.headers)[H_REASON].decode() for r in read_topic(sensors_only, sensors_only.dlq_topic, 2)}
    assert reasons == {"a frame, but this consumer has no image model (set model_path)"}

    frames_only = line_settings(bootstrap, db_url, tiny_model)
    make_topics(frames_only)
    publish_frames(frames_only, count=2)
    send(frames_only, [record(0, 16)])
    stats = ConsumerThread(frames_only, idle_exit=1.0).start().join()
    assert (stats.frames, stats.windows, stats.dlq) == (2, 0, 1)
    (dead,) = read_topic(frames_only, frames_only.dlq_topic, 1)
    assert dict(dead.headers)[H_REASON].decode().startswith("sensor readings, but this consumer has no sensor model")


def stored_anomalies(db_url: str) -> int:
    """Sensor anomaly rows, read while a consumer runs (so without a second migration)."""
    _, sessions = open_database(db_url, upgrade=False)
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(SensorAnomaly)) or 0)


def versions_in_window_order(db_url: str) -> list[str]:
    """The model version that scored each stored window, in window order."""
    return [row.model_version for row in sorted(anomalies(db_url), key=lambda row: row.window_start)]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_changed_sensor_model_file_is_reloaded_mid_stream(bootstrap: str, db_url: str, tmp_path: Path) -> None:
    """A new version of the file serves the next batches and the windows run on exactly; a file with other channels
    is refused and the serving version goes on."""
    path = tmp_path / "sensor.onnx"

    def write_model(version: str, channels: tuple[str, ...] = CHANNELS) -> None:
        meta = tiny_sensor_metadata(channels, T, STRIDE, window_threshold=-1.0, mean=(5.0, 0.0, 0.0), version=version)
        staged = build_tiny_sensor_model(tmp_path / f"staged-{version}.onnx", meta)
        staged.replace(path)  # atomic, as `models promote` or a deploy script would

    write_model("1")
    settings = line_settings(bootstrap, db_url, None, sensor_model_path=path, batch_size=2, model_reload_check_s=0.1)
    make_topics(settings)
    migrate(db_url)  # here, not raced: Alembic's module-level state is not thread-safe

    consumer = ConsumerThread(settings, idle_exit=30.0).start()
    try:
        send(settings, [record(0, 32, device="dev-h")])
        wait_for(lambda: stored_anomalies(db_url) == 3, what="windows scored by v1")
        write_model("2")
        time.sleep(1.0)  # past a reload check
        send(settings, [record(32, 16, device="dev-h")])
        wait_for(lambda: stored_anomalies(db_url) == 5, what="windows scored by v2")
        write_model("3", channels=("a", "b", "x"))  # another layout: refused
        time.sleep(1.0)
        send(settings, [record(48, 16, device="dev-h")])
        wait_for(lambda: stored_anomalies(db_url) == 7, what="windows after the refused file")
    finally:
        consumer.stop_event.set()
        consumer.join()
    assert consumer.error is None
    assert versions_in_window_order(db_url) == ["1", "1", "1", "2", "2", "2", "2"]
    assert starts_by_device(db_url) == {"dev-h": [STRIDE * k for k in range(7)]}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_promoted_sensor_model_reaches_the_line(bootstrap: str, db_url: str, tmp_path: Path) -> None:
    """model_source=registry: the consumer starts on the active version of its sensor model's name and switches when
    `models promote` activates another; windows run on across the switch."""
    from pipeline.registry.gate import PromotionRequest, promote

    def version(number: str) -> Path:
        meta = tiny_sensor_metadata(CHANNELS, T, STRIDE, window_threshold=-1.0, mean=(5.0, 0.0, 0.0), version=number)
        return build_tiny_sensor_model(tmp_path / f"sensor-v{number}.onnx", meta)

    v1, v2 = version("1"), version("2")
    migrate(db_url)
    _, sessions = open_database(db_url, upgrade=False)
    assert promote(sessions, PromotionRequest(v1, decided_by="test")).outcome == "initial"
    settings = line_settings(
        bootstrap, db_url, None, sensor_model_path=v2, batch_size=2, model_reload_check_s=0.1, model_source="registry"
    )
    make_topics(settings)

    consumer = ConsumerThread(settings, idle_exit=30.0).start()
    try:
        send(settings, [record(0, 32, device="dev-r")])
        wait_for(lambda: stored_anomalies(db_url) == 3, what="windows by the active v1, not the v2 file given")
        # v2 has no evaluation report: the gate refuses it unless forced with a reason, which is recorded
        refused = promote(sessions, PromotionRequest(v2, decided_by="test"))
        assert refused.outcome == "refused" and "no evaluation report" in refused.message
        forced = promote(sessions, PromotionRequest(v2, decided_by="test", force=True, reason="new pump fitted"))
        assert forced.outcome == "forced"
        time.sleep(1.0)  # past the watcher's and the loop's checks
        send(settings, [record(32, 16, device="dev-r")])
        wait_for(lambda: stored_anomalies(db_url) == 5, what="windows scored by v2")
    finally:
        consumer.stop_event.set()
        consumer.join()
    assert consumer.error is None
    assert versions_in_window_order(db_url) == ["1", "1", "1", "2", "2"]
    assert starts_by_device(db_url) == {"dev-r": [STRIDE * k for k in range(5)]}


ADAPT = 20  # the adapted model's baseline rows


@pytest.fixture(scope="module")
def adapted_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every window stored (threshold below any score), scored on readings adapted to each run's first ADAPT rows."""
    meta = tiny_sensor_metadata(CHANNELS, T, STRIDE, window_threshold=-1.0)
    assert meta.sensor is not None
    meta = replace(meta, sensor=replace(meta.sensor, adapt_rows=ADAPT))
    return build_tiny_sensor_model(tmp_path_factory.mktemp("sensor-adapted") / "adapted.onnx", meta)


def adapted_line() -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """170 readings far from the model's statistics (levels 100, -7 and 32; c constant through the first run, so its
    baseline scale is the floor), rows 60-61 refused for a NaN, and a logging gap before row 110: three runs, at rows
    0, 62 and 110. And the records they are sent in: cut across the baseline rows, the NaN rows alone, one spanning
    the gap."""
    rng = np.random.default_rng(5)
    values = (rng.standard_normal((170, 3)) * [3.0, 0.2, 0.5] + [100.0, -7.0, 32.0]).astype(np.float32)
    values[:60, 2] = 32.0
    values[60:62, 1] = np.nan
    stamps = START + PERIOD * (np.arange(170) + 10 * (np.arange(170) >= 110))
    return values, stamps, [(0, 7), (7, 20), (20, 29), (29, 60), (60, 62), (62, 87), (87, 117), (117, 170)]


def adapted_record(values: np.ndarray, stamps: np.ndarray, rows: tuple[int, int]) -> EncodedFrame:
    a, b = rows
    offsets = [float(v) for v in stamps[a:b] - stamps[a]]
    block = values[a:b]
    return encode_readings(block, device_id="dev-a", channels=CHANNELS, start_ms=float(stamps[a]), offsets_ms=offsets)


def evaluate_window_scores(model: Path, values: np.ndarray, stamps: np.ndarray, tmp: Path) -> dict[int, float]:
    """What `evaluate` scores on the same readings, by window start row, at the line's stride."""
    from pipeline.sensors.model import SensorModel
    from training.sensors.data import CsvColumns, read_sensor_csv
    from training.sensors.evaluate import evaluate_recording

    lines = ["timestamp,a,b,c,anomaly"]
    lines += [
        ",".join([repr(float(t)), *("" if np.isnan(v) else repr(float(v)) for v in row), "0"])
        for t, row in zip(stamps, values, strict=True)
    ]
    (tmp / "line.csv").write_text("\n".join(lines) + "\n")
    series = read_sensor_csv(tmp / "line.csv", CsvColumns(channels=CHANNELS))
    assert [(s.start, s.stop) for s in series.stretches] == [(0, 60), (62, 110), (110, 170)]
    sensor = SensorModel(model, prefer_gpu=False)
    scores = evaluate_recording(sensor, series, sensor.metadata.image_threshold).scores
    out, at = {}, 0
    for stretch in series.stretches:  # evaluate's scores: every window (stride 1) after each run's baseline rows
        count = max(0, stretch.stop - stretch.start - ADAPT - T + 1)
        for k in range(0, count, STRIDE):
            out[stretch.start + ADAPT + k] = float(scores[at + k])
        at += count
    assert at == len(scores)
    return out


def test_an_adapted_model_scores_on_the_line_what_evaluate_scores_across_restarts(
    bootstrap: str, db_url: str, adapted_model: Path, tmp_path: Path
) -> None:
    """Three consumers in turn (one stops while the first run's baseline rows are arriving, one after the second
    run's baseline is made but before its first window): the same windows with the same scores as `evaluate`, and
    none among each run's first ADAPT readings."""
    settings = line_settings(bootstrap, db_url, None, sensor_model_path=adapted_model, batch_size=2)
    make_topics(settings)
    values, stamps, cuts = adapted_line()
    messages = [adapted_record(values, stamps, rows) for rows in cuts]
    runs = []
    for part in (messages[:1], messages[1:6], messages[6:]):
        send(settings, part)
        runs.append(ConsumerThread(settings, idle_exit=1.0).start().join())
    assert [r.dlq for r in runs] == [0, 1, 0] and sum(r.readings for r in runs) == 168
    expected = evaluate_window_scores(adapted_model, values, stamps, tmp_path)
    assert sorted(expected) == [20, 28, 36, 44, 82, 90, 130, 138, 146, 154]  # run start + ADAPT + k * STRIDE
    rows = anomalies(db_url)
    starts = [int(np.searchsorted(stamps, round(r.window_start.timestamp() * 1000))) for r in rows]
    assert starts == sorted(expected)
    np.testing.assert_allclose([r.score for r in rows], [expected[s] for s in starts], rtol=1e-5, atol=1e-6)
    assert runs[1].windows == 4 and runs[2].windows == 6
    _, sessions = open_database(db_url)
    with sessions() as session:
        (state,) = session.scalars(select(SensorWindowState))
    assert state.adapt_rows == ADAPT and state.baseline_level is not None and len(state.baseline_scale or b"") == 24


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_model_without_adapt_rows_starts_a_stored_adapted_run_over(
    bootstrap: str, db_url: str, adapted_model: Path, every_window_model: Path
) -> None:
    """A state kept for another adapt_rows is not read as this model's: its held readings start over."""
    settings = line_settings(bootstrap, db_url, None, sensor_model_path=adapted_model)
    make_topics(settings)
    send(settings, [record(0, 12, device="dev-m")])  # 12 of the ADAPT baseline rows held
    assert ConsumerThread(settings, idle_exit=1.0).start().join().windows == 0
    plain = settings.model_copy(update={"sensor_model_path": every_window_model})
    send(plain, [record(12, 16, device="dev-m")])
    assert ConsumerThread(plain, idle_exit=1.0).start().join().windows == 1
    assert starts_by_device(db_url) == {"dev-m": [12]}  # not a window over the held rows 0-11


def test_migration_0010_keeps_stored_window_state_as_unadapted(db_url: str) -> None:
    """A state stored before revision 0010 reads as kept for no adaptation (adapt_rows 0, no baseline); the
    downgrade drops the columns again."""
    from alembic import command
    from sqlalchemy import inspect, text

    from pipeline.storage.engine import alembic_config, make_engine

    migrate(db_url, "0009")
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO sensor_window_state (group_id, topic, partition, device_id, line_id, channels, timestamps,"
                " readings, next_offset, updated_at) VALUES ('g', 't', 0, 'd', 'l', '[\"a\"]', :b, :b, 3, :now)"
            ),
            {"b": b"", "now": "2026-12-06 18:00:00"},
        )
    engine.dispose()
    migrate(db_url)
    _, sessions = open_database(db_url, upgrade=False)
    with sessions() as session:
        table = SensorWindowState
        stored = session.execute(
            select(table.adapt_rows, table.baseline_level, table.baseline_scale, table.next_offset)
        )
        assert tuple(stored.one()) == (0, None, None, 3)
    command.downgrade(alembic_config(db_url), "0009")
    columns = {c["name"] for c in inspect(make_engine(db_url)).get_columns("sensor_window_state")}
    assert not {"adapt_rows", "baseline_level", "baseline_scale"} & columns and "readings" in columns
    migrate(db_url)
