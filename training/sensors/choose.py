"""What the training data decide when the user does not: the window from the series' dominant period, the channels
whose level drifts, and which rows are held out for calibration (blocks spread across the training period)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from training.sensors.data import SensorSeries

log = logging.getLogger(__name__)

# A period is a peak of the autocorrelation at least this high, after its first zero crossing.
MIN_PERIOD_PEAK = 0.3
HARMONIC_SHARE = 0.9
ACF_SAMPLES_PER_LAG = 16
MIN_WINDOW, MAX_WINDOW = 16, 512
# A channel drifts when the spread (5th to 95th percentile) of its window medians across the training data is this
# many times its typical spread within a window: noise gives about 0.6, a daily cycle at a daily window about 0.1,
# SKAB's temperatures 5 to 10 over 400 s, its accelerometers and flow rate about 10 over the anomaly-free day.
DRIFT_RATIO = 3.0
MIN_DRIFT_WINDOWS = 4
MAX_HELD_OUT_BLOCKS = 8


@dataclass(frozen=True)
class WindowChoice:
    """The window and stride a model gets, the period they came from (None: none found) and why."""

    window: int
    stride: int
    period: int | None
    source: str  # "option", "period" or "default"


def dominant_period(parts: list[np.ndarray], max_lag: int = 2 * MAX_WINDOW) -> int | None:
    """The lag of the first autocorrelation peak (mean over channels, after its first zero crossing) that reaches
    HARMONIC_SHARE of the highest, in samples; None when no peak reaches MIN_PERIOD_PEAK. Hourly readings with a
    weekly rhythm that differs by weekday give the week (168), a plain daily cycle the day.

    Each channel is first freed of its slow movements (a moving median over 2 * max_lag + 1 samples): a trend or a
    level shift would otherwise keep the autocorrelation high at every lag and hide the seasonal peak. At most
    ACF_SAMPLES_PER_LAG * max_lag samples of the longest stretch are read.
    """
    longest = max(parts, key=len, default=np.empty((0, 1)))
    if len(longest) < 3 * MIN_WINDOW:
        return None
    max_lag = min(max_lag, len(longest) // 3)
    x = longest[: ACF_SAMPLES_PER_LAG * max_lag].astype(np.float64)
    x = x - moving_median(x, 2 * max_lag + 1)
    x = x - x.mean(axis=0)
    power = (x**2).sum(axis=0)
    usable = power > 1e-12 * len(x)
    if not usable.any():
        return None
    x = x[:, usable] / np.sqrt(power[usable])
    size = 1 << int(np.ceil(np.log2(2 * len(x))))
    spectrum = np.fft.rfft(x, size, axis=0)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, size, axis=0)[: max_lag + 1].mean(axis=1)
    below = np.nonzero(acf <= 0)[0]
    if len(below) == 0:
        return None
    lags = np.arange(below[0], max_lag)
    peaks = lags[(acf[lags] >= acf[lags - 1]) & (acf[lags] >= acf[lags + 1]) & (acf[lags] >= MIN_PERIOD_PEAK)]
    if not len(peaks):
        return None
    # the multiples of a period peak nearly as high as the period itself: the first peak close to the highest
    return int(peaks[np.nonzero(acf[peaks] >= HARMONIC_SHARE * acf[peaks].max())[0][0]])


def moving_median(x: np.ndarray, span: int) -> np.ndarray:
    """Centred moving median along axis 0 (edges padded with the end values): unlike a mean, it follows a level
    shift within half a span and leaves no ramp that would swamp the autocorrelation."""
    half = span // 2
    padded = np.concatenate([np.repeat(x[:1], half, axis=0), x, np.repeat(x[-1:], half, axis=0)])
    step = max(1, span // 64)  # the median of every step-th sample: the same level at a fraction of the cost
    view = np.lib.stride_tricks.sliding_window_view(padded, span, axis=0)[:, :, ::step]
    return np.median(view, axis=2)


def choose_window(
    parts: list[np.ndarray], window: int | None, stride: int | None, default: int, multiple: int
) -> WindowChoice:
    """`window` when given; else one dominant period (rounded up to `multiple`, within 16..512 samples), else
    `default`. Never longer than a quarter of the longest stretch, so that calibration keeps windows to score.
    The stride: `stride` when given, else about 24 windows per period (1 for the default window)."""
    if window is not None:
        return WindowChoice(window, stride or 1, None, "option")
    period = dominant_period(parts)
    longest = max((len(p) for p in parts), default=0)
    cap = max(multiple, (min(MAX_WINDOW, longest // 4) // multiple) * multiple)
    if period is None:
        chosen = min(default, cap)
        log.info("no dominant period in the training data: window %d samples (the default)", chosen)
        return WindowChoice(chosen, stride or 1, None, "default")
    rounded = -(-max(period, MIN_WINDOW) // multiple) * multiple
    chosen = min(rounded, cap)
    picked_stride = stride or max(1, period // 24)
    log.info(
        "dominant period %d samples: window %d, stride %d (--window and --stride override)",
        period,
        chosen,
        picked_stride,
    )
    return WindowChoice(chosen, min(picked_stride, chosen), period, "period")


def automatic_level_free(parts: list[np.ndarray], channels: tuple[str, ...], shape: WindowChoice) -> tuple[str, ...]:
    """The channels scored on their shape when the user names none: every channel when the window is one dominant
    period, else the channels whose level drifts (`drifting_channels`).

    A window of one period holds a whole cycle, so its median is the series' baseline over that cycle: taking it
    out removes trends and normal level shifts (new load, new customers), which a model of the training period
    reads as anomalies on every later window, while a fault shorter than half the period still moves the shape.
    The drift test cannot see that need: the season itself makes the in-window spread large.
    """
    if shape.source == "period":
        log.info(
            "the window is one period (%d samples): every channel is scored on its shape within the cycle, so trends "
            "and level shifts are not alarms (--level-free names channels yourself, --level-free none keeps every "
            "level)",
            shape.window,
        )
        return tuple(channels)
    return drifting_channels(parts, channels, shape.window)


def drifting_channels(parts: list[np.ndarray], channels: tuple[str, ...], window: int) -> tuple[str, ...]:
    """The channels whose level wanders across the training data far more than it moves within a window.

    Windows are cut without overlap; the level of each is its median. A channel is drifting when the 5-95 %
    spread of those levels is over DRIFT_RATIO times the median within-window std. Too few windows to tell:
    none.
    """
    cut = [p[: len(p) // window * window].reshape(-1, window, p.shape[1]) for p in parts if len(p) >= window]
    if sum(len(c) for c in cut) < MIN_DRIFT_WINDOWS:
        return ()
    windows = np.concatenate(cut).astype(np.float64)
    levels = np.median(windows, axis=1)
    spread = np.median(windows.std(axis=1), axis=0)
    low, high = np.quantile(levels, [0.05, 0.95], axis=0)
    ratio = (high - low) / np.maximum(spread, 1e-12)
    drifting = tuple(name for name, r in zip(channels, ratio, strict=True) if r > DRIFT_RATIO)
    if len(drifting) > len(channels) / 2:
        # Most sensors follow the operating point (load, speed, set point): the rest share it and will move with
        # the next one even if they held still while the training data was logged.
        log.info(
            "level drifts in %d of %d channels (%s): the operating point moves, every channel is scored on its "
            "shape within each window (--level-free names channels yourself, --level-free none keeps every level)",
            len(drifting),
            len(channels),
            ", ".join(drifting),
        )
        return tuple(channels)
    if drifting:
        shown = ", ".join(f"{name} ({r:.1f})" for name, r in zip(channels, ratio, strict=True) if r > DRIFT_RATIO)
        log.info(
            "level drifts across the training data (level spread / in-window spread > %g): %s; scored on their "
            "shape within each window (--level-free names them yourself, --level-free none keeps every level)",
            DRIFT_RATIO,
            shown,
        )
    return drifting


def held_out_blocks(n_rows: int, val_fraction: float, window: int) -> list[slice]:
    """Rows held out of one recording: `val_fraction` of them, in blocks spread evenly across it, each the tail of
    one equal segment and long enough for several windows. One block (the recording's tail) when it is short.

    A held-out tail alone only shows the end of the training period: a threshold set there does not transfer
    to a series whose level or season moves.
    """
    held = round(n_rows * val_fraction)
    blocks = int(np.clip(held // (4 * window), 1, MAX_HELD_OUT_BLOCKS))
    bounds = np.linspace(0, n_rows, blocks + 1).round().astype(int)
    size = held // blocks
    return [slice(int(stop) - size, int(stop)) for stop in bounds[1:]]


def split_in_time(
    series: list[SensorSeries], val_fraction: float, window: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each recording's held-out blocks (spread across it, training.sensors.choose.held_out_blocks) and the rest
    for fitting: windows of one never overlap the other.

    A random split of overlapping windows would leak: a held-out window shares most samples with training ones.
    Each part is a list of stretches (no missing reading, no time gap), which windows never cross.
    """
    fit: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for one in series:
        start = 0
        for block in held_out_blocks(len(one.values), val_fraction, window):
            fit += one.parts(start, block.start)
            held += one.parts(block.start, block.stop)
            start = block.stop
        fit += one.parts(start)
    return fit, held
