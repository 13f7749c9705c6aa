"""The defect-rate chart drawn on the server: coordinates for an inline SVG (no script, no chart library)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.storage.rates import STEPS_S, DefectRates, RatePoint

WIDTH, HEIGHT = 900, 280
LEFT, RIGHT, TOP, BOTTOM = 60, 16, 14, 34
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#a16207", "#db2777", "#4b5563", "#65a30d")
# Upper ends of the rate axis: the smallest one above the highest bucket keeps small rates readable.
Y_TOPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
# The longest window a chart spans (a year and a bit: weekly buckets, a few dozen of them), and its most x ticks.
MAX_SPAN = timedelta(days=400)
MAX_X_TICKS = 12

Scale = Callable[[float], float]


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Series:
    """One camera's line: path segments (broken where buckets have no frames) and a dot per bucket."""

    camera: str
    colour: str
    paths: list[str]
    dots: list[Dot]
    frames: int
    defects: int

    @property
    def rate(self) -> float:
        return self.defects / self.frames if self.frames else 0.0


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    step_s: int
    hidden: int


def rate_chart(rates: DefectRates) -> Chart:
    left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    start, end = rates.since.timestamp(), rates.until.timestamp()
    span = max(1.0, end - start)
    peak = max((p.rate for points in rates.series.values() for p in points), default=0.0)
    y_top = next((value for value in Y_TOPS if peak <= value), Y_TOPS[-1])

    def x_of(when: float) -> float:
        return round(left + min(max((when - start) / span, 0.0), 1.0) * (right - left), 1)

    def y_of(rate: float) -> float:
        return round(bottom - rate / y_top * (bottom - top), 1)

    series = [
        _series(camera, PALETTE[i % len(PALETTE)], points, rates.step_s, x_of, y_of)
        for i, (camera, points) in enumerate(rates.series.items())
    ]
    y_ticks = [Tick(y_of(y_top * k / 4), f"{y_top * k / 4 * 100:g} %") for k in range(5)]
    x_ticks = _x_ticks(start, end, x_of)
    return Chart(WIDTH, HEIGHT, left, right, top, bottom, series, x_ticks, y_ticks, rates.step_s, rates.hidden)


def _series(camera: str, colour: str, points: list[RatePoint], step: int, x_of: Scale, y_of: Scale) -> Series:
    paths: list[str] = []
    dots: list[Dot] = []
    segment: list[str] = []
    previous: RatePoint | None = None
    for point in points:
        if previous is not None and (point.start - previous.start).total_seconds() > step:
            paths.append(" ".join(segment))
            segment = []
        x, y = x_of(point.start.timestamp() + step / 2), y_of(point.rate)
        segment.append(f"{'M' if not segment else 'L'}{x},{y}")
        title = f"{camera} {point.start:%Y-%m-%d %H:%M} UTC: {point.defects}/{point.frames} = {point.rate:.2%}"
        dots.append(Dot(x, y, title))
        previous = point
    if segment:
        paths.append(" ".join(segment))
    frames, defects = sum(p.frames for p in points), sum(p.defects for p in points)
    return Series(camera, colour, paths, dots, frames, defects)


def chart_span_problem(since: datetime | None, until: datetime | None, now: datetime) -> str | None:
    """Why a chart window is refused (longer than MAX_SPAN, or ending before it starts), or None."""
    if since is None:
        return None  # a day before the end
    end = until if until is not None else max(now, since)
    if end <= since:
        return "the chart's until must come after its since"
    if end - since > MAX_SPAN:
        return f"the chart spans at most {MAX_SPAN.days} days: narrow since/until"
    return None


def _x_ticks(start: float, end: float, x_of: Scale) -> list[Tick]:
    span = end - start
    every = next((step for step in STEPS_S if span / step <= 6), STEPS_S[-1])
    # past the longest round step, whole multiples of it: never more than MAX_X_TICKS ticks, whatever the span
    every *= max(1, -(-int(span) // (every * (MAX_X_TICKS - 1))))
    pattern = "%H:%M" if span <= 86400 else ("%m-%d %H:%M" if every < 86400 else "%Y-%m-%d")
    first = -(-int(start) // every) * every
    return [Tick(x_of(t), datetime.fromtimestamp(t, UTC).strftime(pattern)) for t in range(first, int(end) + 1, every)]
