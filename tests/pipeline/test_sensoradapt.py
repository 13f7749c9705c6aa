"""Operating-point adaptation: a run re-expressed against its own first rows."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from pipeline.contract import SensorSpec
from pipeline.sensors.adapt import RunBaseline, adapt_run, adapt_runs, feed_adapted
from pipeline.sensors.windows import DeviceTail
from pipeline.sensors.wire import SensorBlock


def test_a_run_at_another_operating_point_adapts_to_the_same_readings() -> None:
    rng = np.random.default_rng(0)
    run = rng.standard_normal((200, 3)) * [1.0, 0.1, 5.0] + [0.0, 2.0, 230.0]
    elsewhere = run * [0.2, 3.0, 0.5] + [40.0, -1.0, 12.0]  # another level and noise on every channel
    np.testing.assert_allclose(adapt_run(elsewhere, 50, 3), adapt_run(run, 50, 3), atol=1e-4)


def test_a_level_change_after_the_baseline_rows_stays_visible() -> None:
    rng = np.random.default_rng(1)
    run = rng.standard_normal((200, 2)) * 0.1 + 5.0
    run[150:, 1] -= 1.0  # a flow drop of ten noise std
    adapted = adapt_run(run, 100, 2)
    assert adapted is not None
    assert abs(np.median(adapted[:100], axis=0)).max() < 0.1
    assert np.median(adapted[150:, 1]) < -8 and abs(np.median(adapted[150:, 0])) < 0.5


def test_calendar_columns_are_left_alone_and_short_runs_get_no_baseline() -> None:
    run = np.column_stack([np.linspace(0, 10, 40), np.linspace(-1, 1, 40)])
    adapted = adapt_run(run, 10, 1)
    assert adapted is not None
    np.testing.assert_allclose(adapted[:, 1], run[:, 1], atol=1e-6)
    assert adapt_run(run, 41, 1) is None
    assert adapt_run(run, 0, 1) is run  # off: the readings as they are


def test_a_channel_still_in_the_baseline_rows_gets_a_floored_scale() -> None:
    baseline = RunBaseline.of(np.full((20, 1), 32.0))
    assert baseline.scale[0] > 0
    assert np.isfinite(baseline.apply(np.array([[32.5]]))).all()


def test_each_stretch_of_a_recording_is_its_own_run() -> None:
    values = np.concatenate([np.full((30, 1), 5.0), np.full((5, 1), np.nan), np.full((8, 1), 9.0)])
    values[:30, 0] += np.arange(30) % 2  # readings 5, 6, 5, 6...: median 5.5, std 0.5
    adapted, kept = adapt_runs(values, (slice(0, 30), slice(35, 43)), 10, 1)
    assert kept == (slice(0, 30),)  # the 8-row run never gets a baseline
    np.testing.assert_allclose(adapted[:4, 0], [-1, 1, -1, 1])
    assert np.isnan(adapted[30:]).all()


def _block(values: np.ndarray, stamps: np.ndarray) -> SensorBlock:
    return SensorBlock("dev", "line", ("a", "b"), stamps, values.astype(np.float32), 0)


def _windows(cuts: list[int], values: np.ndarray, stamps: np.ndarray, spec: SensorSpec) -> list[tuple[float, float]]:
    """(first timestamp, its baseline's level of channel a) of each window, the readings sent in records cut at
    `cuts`."""
    tail, baseline, out = DeviceTail.empty("dev", "line", 2), None, []
    for offset, (a, b) in enumerate(pairwise([0, *cuts, len(values)])):
        fed = feed_adapted(tail, baseline, _block(values[a:b], stamps[a:b]), spec, 3.0, offset)
        baseline = fed.baseline
        out += [(window.start_ms, float(run.level[0])) for window, run in fed.windows]
    return out


def test_the_line_cuts_runs_and_windows_whatever_the_records() -> None:
    rng = np.random.default_rng(2)
    values = rng.standard_normal((100, 2)) + np.array([3.0, -1.0])
    values[45:, 0] += 50.0  # the second run at another level
    stamps = 1000.0 * (np.arange(100) + 20 * (np.arange(100) >= 45))  # a gap before row 45
    spec = SensorSpec(("a", "b"), 8, 4, (0.0, 0.0), (1.0, 1.0), adapt_rows=10)
    whole = _windows([], values, stamps, spec)
    # runs [0, 45) and [45, 100): windows from row 10 and from row 55, every 4 rows
    assert [int(np.searchsorted(stamps, s)) for s, _ in whole] == [*range(10, 38, 4), *range(55, 93, 4)]
    assert {round(level) for _, level in whole} == {3, 53}
    for cuts in ([1, 9, 10, 11, 44, 45, 46], [30, 60], [5, 50, 51, 99], list(range(1, 100, 5))):
        assert _windows(cuts, values, stamps, spec) == whole
