"""Calendar inputs: the phase of the day and week of each reading, computed one way for training and the line."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from pipeline.sensors.timefeatures import calendar_channel_names, calendar_columns, with_calendar


def ms(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000


def test_day_phase_is_the_time_of_day_in_utc() -> None:
    stamps = np.array([ms("2026-03-02 00:00"), ms("2026-03-02 06:00"), ms("2026-03-02 12:00"), ms("2026-03-03 00:00")])
    day = calendar_columns(stamps, ("day",))
    np.testing.assert_allclose(day, [[0, 1], [1, 0], [0, -1], [0, 1]], atol=1e-6)


def test_week_phase_repeats_weekly_and_differs_between_days() -> None:
    monday, tuesday = ms("2026-03-02 08:00"), ms("2026-03-03 08:00")
    week = calendar_columns(np.array([monday, tuesday, monday + 7 * 86_400_000]), ("week",))
    np.testing.assert_allclose(week[0], week[2], atol=1e-6)
    assert not np.allclose(week[0], week[1], atol=1e-3)


def test_phase_of_recent_timestamps_keeps_seconds() -> None:
    # a float32 phase of 1.7e12 ms would be off by minutes; one second apart must give distinct inputs
    stamps = np.array([ms("2026-03-02 08:00:00"), ms("2026-03-02 08:00:01")])
    day = calendar_columns(stamps, ("day",))
    assert np.abs(day[1] - day[0]).max() > 0.5 * 2 * np.pi / 86_400


def test_with_calendar_appends_after_the_sensor_channels() -> None:
    values = np.ones((3, 2), dtype=np.float32)
    stamps = np.arange(3) * 60_000.0
    out = with_calendar(values, stamps, ("day", "week"))
    assert out.shape == (3, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :2], values)
    assert calendar_channel_names(("day", "week")) == ("day_sin", "day_cos", "week_sin", "week_cos")
    assert with_calendar(values, None, ()) is values
    with pytest.raises(ValueError, match="timestamps"):
        with_calendar(values, None, ("day",))
