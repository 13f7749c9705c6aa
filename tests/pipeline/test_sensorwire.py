"""The sensor wire format and its record-level bad-reading rules."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InvalidMessageError
from pipeline.sensors.wire import SENSOR, encode_readings, is_sensor_record, parse_readings
from pipeline.wire import encode_frame

MAX = 1 << 20


def block(values: np.ndarray, **kwargs: object):  # type: ignore[no-untyped-def]
    options: dict = {"device_id": "dev-1", "channels": ("a", "b"), "start_ms": 1_000_000, "period_ms": 10.0}
    options.update(kwargs)
    encoded = encode_readings(values, **options)
    return encoded, parse_readings(encoded.value, encoded.headers, MAX)


def test_a_block_round_trips() -> None:
    values = np.arange(10, dtype=np.float32).reshape(5, 2)
    encoded, parsed = block(values, line_id="L", seq=7, sample_rate_hz=100.0)
    assert encoded.key == b"dev-1" and is_sensor_record(encoded.headers) and (b"content-type", SENSOR.encode())
    assert parsed.device_id == "dev-1" and parsed.line_id == "L" and parsed.seq == 7 and parsed.channels == ("a", "b")
    np.testing.assert_array_equal(parsed.values, values)
    np.testing.assert_allclose(parsed.timestamps_ms, 1_000_000 + 10.0 * np.arange(5))
    assert parsed.sample_rate_hz == 100.0 and parsed.period_ms == 10.0


def test_one_reading_vector_needs_no_period() -> None:
    _, parsed = block(np.array([1.5, 2.5]), period_ms=None)
    assert parsed.values.shape == (1, 2) and parsed.timestamps_ms.tolist() == [1_000_000]


def test_per_sample_offsets() -> None:
    _, parsed = block(np.zeros((3, 2)), period_ms=None, offsets_ms=[0, 5, 12.5])
    assert parsed.timestamps_ms.tolist() == [1_000_000, 1_000_005, 1_000_012.5]


def test_frames_are_not_sensor_records() -> None:
    assert not is_sensor_record(encode_frame(np.zeros((8, 8), np.uint8), camera_id="c").headers)


@pytest.mark.parametrize(
    ("values", "kwargs", "reason"),
    [
        (np.array([[1.0, np.nan]]), {}, "non-finite reading (NaN/inf): 1 of them, first at sample 0 channel 'b'"),
        (np.array([[1.0, 2.0], [np.inf, 0.0]]), {}, "non-finite reading (NaN/inf): 1 of them, first at sample 1"),
        (np.zeros((3, 2)), {"period_ms": None, "offsets_ms": [0, 5, 5]}, "duplicate timestamp at sample 2"),
        (np.zeros((3, 2)), {"period_ms": None, "offsets_ms": [0, 5, 3]}, "out-of-order timestamp at sample 2"),
        (np.zeros((3, 2)), {"period_ms": None}, "3 samples need header 'period-ms' or 'sample-offsets-ms'"),
        (np.zeros((2, 2)), {"offsets_ms": [0, 1]}, "both given"),
        (np.zeros((2, 2)), {"period_ms": 0.0}, "must be positive"),
        (np.zeros((2, 2)), {"period_ms": None, "offsets_ms": [0]}, "has 1 offsets for 2 samples"),
        (np.zeros((2, 2)), {"channels": ("a", "a")}, "names a channel twice"),
        (np.zeros((2, 2)), {"device_id": "x" * 129}, "at most 128 allowed"),
    ],
)
def test_bad_records_are_refused_with_the_reason(values: np.ndarray, kwargs: dict, reason: str) -> None:
    with pytest.raises(InvalidMessageError) as err:
        block(values, **kwargs)
    assert reason in err.value.reason


def test_a_value_that_is_not_whole_samples_is_refused() -> None:
    encoded = encode_readings(np.zeros((2, 2)), device_id="d", channels=("a", "b"), start_ms=0, period_ms=1)
    with pytest.raises(InvalidMessageError, match="not whole samples"):
        parse_readings(encoded.value[:-2], encoded.headers, MAX)
    with pytest.raises(InvalidMessageError, match="exceeds max_frame_bytes"):
        parse_readings(encoded.value, encoded.headers, 8)
    with pytest.raises(InvalidMessageError, match="missing header 'channels'"):
        parse_readings(encoded.value, [h for h in encoded.headers if h[0] != "channels"], MAX)
