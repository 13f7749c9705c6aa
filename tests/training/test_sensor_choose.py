"""What training decides from the data: window from the dominant period, drifting channels, held-out blocks."""

from __future__ import annotations

import numpy as np

from training.sensors.choose import (
    automatic_level_free,
    choose_window,
    dominant_period,
    drifting_channels,
    held_out_blocks,
)


def seasonal(n: int, period: int, seed: int = 0, trend: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (np.sin(2 * np.pi * t / period) + 0.2 * rng.normal(size=n) + trend * t / n)[:, None]


def test_the_dominant_period_is_found_through_a_trend_and_a_level_shift() -> None:
    series = seasonal(3000, 96, trend=5.0)
    series[1500:] += 4.0
    assert dominant_period([series]) in range(94, 99)


def test_noise_has_no_period() -> None:
    assert dominant_period([np.random.default_rng(1).normal(size=(2000, 2))]) is None


def test_window_from_the_period_rounded_and_bounded() -> None:
    chosen = choose_window([seasonal(3000, 90)], None, None, default=60, multiple=4)
    assert (chosen.window, chosen.source) == (92, "period") and chosen.period in range(88, 93)
    assert chosen.stride == max(1, chosen.period // 24)
    assert choose_window([seasonal(3000, 90)], 32, None, 60, 4).window == 32  # --window wins
    noise = choose_window([np.random.default_rng(0).normal(size=(3000, 1))], None, None, 60, 4)
    assert (noise.window, noise.stride, noise.period, noise.source) == (60, 1, None, "default")
    short = choose_window([seasonal(200, 90)], None, None, 60, 4)
    assert short.window <= 50  # a quarter of the recording at most


def test_a_drifting_channel_is_found_and_a_seasonal_one_is_not() -> None:
    n = 2880
    drifting = np.linspace(0, 30, n) + np.random.default_rng(2).normal(size=n)
    steady = seasonal(n, 96, seed=3)[:, 0]
    found = drifting_channels([np.stack([drifting, steady], axis=1)], ("temp", "load"), 96)
    assert found == ("temp",)
    assert drifting_channels([np.zeros((50, 2))], ("a", "b"), 96) == ()  # too short to tell


def test_held_out_blocks_spread_across_a_long_recording_and_are_the_tail_of_a_short_one() -> None:
    blocks = held_out_blocks(10_000, 0.2, 60)
    assert len(blocks) == 8 and sum(b.stop - b.start for b in blocks) in range(1990, 2001)
    assert blocks[0].start < 2000 and blocks[-1].stop == 10_000
    assert held_out_blocks(400, 0.2, 60) == [slice(320, 400)]


def test_when_most_channels_drift_every_channel_is_level_free() -> None:
    n = 2000
    rng = np.random.default_rng(4)
    ramp = np.linspace(0, 20, n)
    values = np.stack([ramp + rng.normal(size=n), -ramp + rng.normal(size=n), rng.normal(size=n)], axis=1)
    assert drifting_channels([values], ("speed", "flow", "voltage"), 60) == ("speed", "flow", "voltage")


def test_a_window_of_one_period_makes_every_channel_level_free_and_a_default_window_asks_the_drift_test() -> None:
    n = 2880
    values = np.concatenate([seasonal(n, 96, seed=5), np.random.default_rng(6).normal(size=(n, 1))], axis=1)
    by_period = choose_window([values], None, None, 60, 4)
    assert by_period.source == "period"
    assert automatic_level_free([values], ("load", "noise"), by_period) == ("load", "noise")
    given = choose_window([values], 60, None, 60, 4)
    assert automatic_level_free([values], ("load", "noise"), given) == ()  # neither drifts across the data
