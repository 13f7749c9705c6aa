"""The sensor simulator: a SKAB-layout CSV replayed to Kafka in the sensor wire format (`simulate --kind sensors`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import line_settings, make_topics
from helpers import read_topic
from typer.testing import CliRunner

from pipeline.cli.app import build_app
from pipeline.dev.sensorsim import read_csv
from pipeline.sensors.wire import parse_readings

CSV = """datetime;Accelerometer1RMS;Accelerometer2RMS;Current;anomaly;changepoint
2020-03-09 10:14:33;0.0266;0.0402;0.77;0.0;0.0
2020-03-09 10:14:34;0.0267;0.0401;0.78;0.0;0.0
2020-03-09 10:14:36;0.0265;0.0399;0.79;1.0;1.0
"""


def skab(tmp_path: Path) -> Path:
    path = tmp_path / "1.csv"
    path.write_text(CSV)
    return path


def test_read_csv_keeps_readings_and_labels_apart(tmp_path: Path) -> None:
    recording = read_csv(skab(tmp_path))
    assert recording.channels == ("Accelerometer1RMS", "Accelerometer2RMS", "Current")
    assert (
        recording.values.shape == (3, 3) and recording.anomaly is not None and recording.anomaly.tolist() == [0, 0, 1]
    )
    assert np.diff(recording.timestamps_ms).tolist() == [1000.0, 2000.0]


def test_a_csv_without_time_column_is_replayed_one_second_apart(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("vibration,current\n0.1,2.0\n0.2,\n0.3,2.2\n")
    recording = read_csv(path)
    assert recording.channels == ("vibration", "current") and recording.anomaly is None
    assert np.diff(recording.timestamps_ms).tolist() == [1000.0, 1000.0]
    assert np.isnan(recording.values[1, 1])  # sent as it is: the consumer dead-letters that record, with the reason


def test_simulate_sensors_replays_the_csv(bootstrap: str, tmp_path: Path) -> None:
    settings = line_settings(bootstrap, f"sqlite:///{tmp_path / 'x.db'}", None)
    make_topics(settings)
    args = ["simulate", "--kind", "sensors", "--source", str(skab(tmp_path)), "--bootstrap", bootstrap]
    sent = CliRunner().invoke(build_app(), [*args, "--topic", settings.frames_topic, "--rate", "0", "--block", "2"])
    assert sent.exit_code == 0, sent.output
    assert sent.output.startswith("sent 2 sensor records")
    first, second = (
        parse_readings(r.value, r.headers, 1 << 20) for r in read_topic(settings, settings.frames_topic, 2)
    )
    assert first.device_id == "sensor-1" and first.values.shape == (2, 3) and second.values.shape == (1, 3)
    assert second.timestamps_ms[0] - first.timestamps_ms[0] == 3000.0
    assert first.values[1, 2] == np.float32(0.78)
    missing = CliRunner().invoke(build_app(), ["simulate", "--kind", "sensors", "--source", str(tmp_path / "no.csv")])
    assert missing.exit_code == 1 and "needs --source CSV" in missing.output
