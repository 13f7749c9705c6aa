"""Hostile sensor records against the real broker and PostgreSQL: every way a broken or malicious device can break
the sensor wire format or its rules across records, mixed with good readings of a few devices; each bad record is
dead-lettered once with its reason, each good window scored, the consumer alive."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import line_settings, make_topics, new_pg_database
from helpers import ConsumerThread, read_topic
from hostile import Hostile, _drop, _set
from sqlalchemy import func, select
from test_hostile import produce, refuse_camera

from pipeline.deadletter import H_REASON, H_SOURCE_OFFSET
from pipeline.sensors.wire import MAX_SAMPLES, EncodedFrame, encode_readings
from pipeline.storage.engine import open_database
from pipeline.storage.tables import SensorAnomaly
from tests.pipeline.model_factory import build_tiny_sensor_model, tiny_sensor_metadata

pytestmark = pytest.mark.integration

CHANNELS = ("a", "b", "c")
T, STRIDE, PERIOD, SAMPLES = 16, 8, 10.0, 16  # window, stride, ms between samples, samples per good record
START = 1_800_000_000_000.0
DEVICES = 4
ROUNDS = 100  # each: one good record per device, then BAD_PER_ROUND bad ones
BAD_PER_ROUND = 8
MAX_FRAME_BYTES = 300_000

Maker = Callable[[EncodedFrame, int], Hostile]  # (a good record of a fresh device, the round) -> a bad record


@pytest.fixture(scope="module")
def every_window_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every window an "anomaly" (threshold below any score), so each scored window leaves a row to count."""
    meta = tiny_sensor_metadata(CHANNELS, T, STRIDE, window_threshold=-1.0, mean=(5.0, 0.0, 0.0))
    return build_tiny_sensor_model(tmp_path_factory.mktemp("sensor-all") / "all.onnx", meta)


def good_record(device: str, first: int, count: int = SAMPLES, **options: object) -> EncodedFrame:
    index = np.arange(first, first + count, dtype=np.float32)
    values = np.stack([5.0 + 0.01 * index, np.sin(index), np.zeros_like(index)], axis=1)
    return encode_readings(
        values, device_id=device, channels=CHANNELS, start_ms=START + PERIOD * first, period_ms=PERIOD, **options
    )


def _offsets(count: int, *, at: int, to: float) -> bytes:
    offsets = [PERIOD * i for i in range(count)]
    offsets[at] = to
    return ",".join(repr(v) for v in offsets).encode()


def _values(value: bytes, at: int, to: float) -> bytes:
    readings = np.frombuffer(value, dtype="<f4").copy()
    readings[at] = to
    return readings.tobytes()


def hostile_sensor_kinds() -> list[Maker]:
    """One maker per kind of bad sensor record; all but the last use a device of their own, so only the rule under
    test can stop them."""

    def header(name: str, value: bytes, reason: str) -> Maker:
        return lambda r, _: Hostile(f"header {name}={value[:12]!r}", r.value, _set(r.headers, name, value), reason)

    def payload(kind: str, make: Callable[[bytes], bytes], reason: str) -> Maker:
        return lambda r, _: Hostile(kind, make(r.value), r.headers, reason)

    def offsets(kind: str, value: bytes, reason: str) -> Maker:
        return lambda r, _: Hostile(
            kind, r.value, _set(_drop(r.headers, "period-ms"), "sample-offsets-ms", value), reason
        )

    def too_many_samples(r: EncodedFrame, _: int) -> Hostile:
        value = np.zeros(MAX_SAMPLES + 1, "<f4").tobytes()  # one channel: under max_frame_bytes, over the samples
        return Hostile("too many samples", value, _set(r.headers, "channels", b"a"), "samples in one record, at most")

    def older(r: EncodedFrame, round_: int) -> Hostile:
        # A good device that is already past this record's samples (its round's good record came first).
        late = good_record(f"dev-{round_ % DEVICES}", SAMPLES * round_ - 4, 4)
        return Hostile("older than the device", late.value, late.headers, "readings: first sample at")

    return [
        payload("NaN reading", lambda v: _values(v, 7, np.nan), "non-finite reading (NaN/inf)"),
        payload("+inf reading", lambda v: _values(v, 0, np.inf), "non-finite reading (NaN/inf)"),
        payload("-inf reading", lambda v: _values(v, 47, -np.inf), "first at sample 15 channel 'c'"),
        payload("cut value", lambda v: v[:-2], "not whole samples of 3 float32"),
        payload("one sample short of a channel", lambda v: v[:-4], "not whole samples of 3 float32"),
        payload("empty value", lambda v: b"", "empty value"),
        payload("oversized value", lambda v: b"\0" * (MAX_FRAME_BYTES + 12), "exceeds max_frame_bytes"),
        too_many_samples,
        header("device-id", b"d" * 129, "has 129 characters"),
        header("device-id", b"dev\x00\x1b[2J", "control characters"),
        header("device-id", b" dev-1", "surrounding spaces"),
        header("device-id", b"\xff\xfe", "not UTF-8"),
        header("line-id", b"L" * 5000, "has 5000 characters"),
        header("channels", b"a,,c", "bad header 'channels'"),
        header("channels", b"a, b,c", "bad header 'channels'"),
        header("channels", b"a,b\x07,c", "bad header 'channels'"),
        header("channels", ",".join(f"c{i}" for i in range(1025)).encode(), "bad header 'channels'"),
        header("channels", b"a,b,a", "names a channel twice"),
        header("channels", b"a,b,x", "missing channels: 1 of the model's 3 (c)"),
        lambda r, _: Hostile("two channels", r.value[: 16 * 8], _set(r.headers, "channels", b"b,a"), "(c)"),
        lambda r, _: Hostile("no channels", r.value, _drop(r.headers, "channels"), "missing header 'channels'"),
        offsets("duplicate timestamp", _offsets(SAMPLES, at=5, to=4 * PERIOD), "duplicate timestamp at sample 5"),
        offsets("timestamps going back", _offsets(SAMPLES, at=9, to=2.5), "out-of-order timestamp at sample 9"),
        offsets("offsets not from 0", _offsets(SAMPLES, at=0, to=1.0), "must start at 0"),
        offsets("too few offsets", b"0,10,20", "has 3 offsets for 16 samples"),
        offsets("offsets garbage", b"0,10,x", "bad header 'sample-offsets-ms'"),
        offsets("offsets inf", _offsets(SAMPLES, at=15, to=float("inf")), "must start at 0 and be finite"),
        offsets("offsets below the clock's resolution", _offsets(SAMPLES, at=1, to=1e-9), "strictly increase"),
        header("period-ms", b"0", "must be positive"),
        header("period-ms", b"-10", "must be positive"),
        header("period-ms", b"nan", "header 'period-ms' out of range"),
        header("period-ms", b"ten", "bad header 'period-ms'"),
        header("period-ms", b"1e-9", "strictly increase"),
        header("period-ms", b"2e13", "outside the years 1 to 9999"),  # 16 samples past the year 9999
        header("capture-ts-ms", b"-100000000000000", "outside the years 1 to 9999"),  # before the year 1
        header("capture-ts-ms", b"inf", "header 'capture-ts-ms' out of range"),
        header("capture-ts-ms", b"9" * 40, "header 'capture-ts-ms' out of range"),
        header("sample-rate-hz", b"0", "must be positive"),
        header("seq", b"-5", "out of range"),
        header("lg-version", b"99", "unsupported wire version"),
        lambda r, _: Hostile(
            "both period and offsets", r.value, [*r.headers, ("sample-offsets-ms", b"0")], "both given"
        ),
        lambda r, _: Hostile("no period", r.value, _drop(r.headers, "period-ms"), "need header 'period-ms'"),
        lambda r, _: Hostile("100 headers", r.value, r.headers + [(f"x-{i}", b"1") for i in range(100)], "at most 64"),
        lambda r, _: Hostile("huge header", r.value, [*r.headers, ("x-junk", b"j" * 300_000)], "headers take"),
        lambda r, _: Hostile("huge offsets", r.value, _set(r.headers, "sample-offsets-ms", b"0," * 40_000), "take"),
        older,
    ]


def mixed_sensor_records() -> list[Hostile | EncodedFrame]:
    """Rounds of one good record per device (contiguous readings, no gaps) and bad records of every kind in turn."""
    kinds = hostile_sensor_kinds()
    records: list[Hostile | EncodedFrame] = []
    bad = 0
    for round_ in range(ROUNDS):
        records += [good_record(f"dev-{d}", SAMPLES * round_, seq=round_) for d in range(DEVICES)]
        for _ in range(BAD_PER_ROUND):
            records.append(kinds[bad % len(kinds)](good_record(f"bad-{bad}", 0), round_))
            bad += 1
    return records


def test_hostile_sensor_records_are_dead_lettered_once_and_good_windows_scored(
    bootstrap: str, pg_server: str, every_window_model: Path
) -> None:
    settings = line_settings(
        bootstrap,
        new_pg_database(pg_server),
        None,
        sensor_model_path=every_window_model,
        denoised_topic=None,
        max_frame_bytes=MAX_FRAME_BYTES,
        alert_cooldown_s=3600.0,  # one alert per device: the windows are what is counted here
        batch_size=64,
    )
    make_topics(settings)
    records = mixed_sensor_records()
    bad = {offset: r for offset, r in enumerate(records) if isinstance(r, Hostile)}
    assert len(bad) == ROUNDS * BAD_PER_ROUND and len({r.kind for r in bad.values()}) == len(hostile_sensor_kinds())
    produce(settings, records)

    consumer = ConsumerThread(settings, idle_exit=3.0).start()
    stats = consumer.join(timeout=300)  # returns only if the consumer ran to its idle exit, alive throughout

    windows = DEVICES * ((ROUNDS * SAMPLES - T) // STRIDE + 1)
    assert (stats.sensor_records, stats.dlq, stats.windows) == (DEVICES * ROUNDS, len(bad), windows)
    _, sessions = open_database(settings.db_url)
    with sessions() as session:
        rows = session.execute(select(SensorAnomaly.device_id, func.count()).group_by(SensorAnomaly.device_id))
        stored = {device: count for device, count in rows}
    assert stored == {f"dev-{d}": windows // DEVICES for d in range(DEVICES)}  # every good window, once
    dead = read_topic(settings, settings.dlq_topic, expected=len(bad), timeout=60)
    offsets = Counter(int(dict(r.headers)[H_SOURCE_OFFSET]) for r in dead)
    assert set(offsets) == set(bad) and max(offsets.values()) == 1  # each bad record exactly once
    wrong = []
    for record in dead:
        expected = bad[int(dict(record.headers)[H_SOURCE_OFFSET])]
        reason = dict(record.headers)[H_REASON].decode()
        if expected.reason not in reason:
            wrong.append((expected.kind, expected.reason, reason))
    assert not wrong, sorted(set(wrong))


def test_a_sensor_window_the_database_refuses_is_isolated_and_its_record_dead_lettered(
    bootstrap: str, db_url: str, every_window_model: Path
) -> None:
    settings = line_settings(
        bootstrap, db_url, None, sensor_model_path=every_window_model, denoised_topic=None, alert_cooldown_s=3600.0
    )
    make_topics(settings)
    refuse_camera(db_url, "dev-poison", table="sensor_anomalies", column="device_id")
    records, poisoned = [], []
    for round_ in range(12):
        records += [good_record(f"dev-{d}", SAMPLES * round_) for d in range(2)]
        if round_ % 3 == 1:  # each completes one or two windows, which the database refuses
            poisoned.append(len(records))
            records.append(good_record("dev-poison", SAMPLES * round_))
    produce(settings, records)
    stats = ConsumerThread(settings, idle_exit=2.0).start().join(timeout=120)

    windows = 2 * ((12 * SAMPLES - T) // STRIDE + 1)
    assert (stats.dlq, stats.sensor_records, stats.windows) == (len(poisoned), 24, windows)
    _, sessions = open_database(settings.db_url)
    with sessions() as session:
        rows = session.execute(select(SensorAnomaly.device_id, func.count()).group_by(SensorAnomaly.device_id))
        assert {device: count for device, count in rows} == {"dev-0": windows // 2, "dev-1": windows // 2}
    dead = read_topic(settings, settings.dlq_topic, expected=len(poisoned))
    assert sorted(int(dict(r.headers)[H_SOURCE_OFFSET]) for r in dead) == poisoned
    assert all(dict(r.headers)[H_REASON].startswith(b"database refused the sensor window") for r in dead)
