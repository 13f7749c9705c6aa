"""`evaluate --report DIR` for sensor models: one plot per recording (signal, score, threshold, labelled stretches,
alarms) and metrics.json with the figures, per recording and pooled, so a user sees at a glance why a series
misfires."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from pipeline.sensors.adapt import adapt_runs
from pipeline.sensors.model import SensorModel
from training.sensors.data import CsvColumns, SensorSeries
from training.sensors.evaluate import RecordingResult, SensorEvaluation, judge_recordings

MAX_PLOTTED_CHANNELS = 4


def evaluate_with_report(model_path: Path, data: Path, columns: CsvColumns, folder: Path) -> SensorEvaluation:
    """training.sensors.evaluate.evaluate_sensors, plus the plots and metrics.json in `folder`."""
    model, recordings, results, evaluation = judge_recordings(model_path, data, columns)
    write_sensor_report(folder, model, recordings, results, evaluation)
    return evaluation


def write_sensor_report(
    folder: Path,
    model: SensorModel,
    recordings: list[SensorSeries],
    results: list[RecordingResult],
    evaluation: SensorEvaluation,
) -> None:
    """Write `<recording>.png` per recording and `metrics.json` into `folder` (created)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server; must precede pyplot
    folder.mkdir(parents=True, exist_ok=True)
    per_recording = []
    used: set[str] = set()
    for series, result in zip(recordings, results, strict=True):
        stem = unique_stem(series.name, used)
        plot_recording(folder / f"{stem}.png", model, series, result)
        per_recording.append(
            {
                "recording": series.name,
                "plot": f"{stem}.png",
                "point_f1": result.point.f1,
                "point_far": result.point.far,
                "point_mar": result.point.mar,
                "window_f1": result.window.f1,
                "alarmed_rows": int(result.verdicts.sum()),
                "top_channels": result.top_channels,
            }
        )
    spec = model.spec
    summary = {
        **evaluation.to_dict(),
        "window_stride": spec.window_stride,
        "period_samples": spec.period_samples,
        "point_rule": spec.point_rule,
        "adapt_rows": spec.adapt_rows,
        "level_free_channels": list(spec.level_free_channels),
        "calendar": list(spec.calendar),
        "recordings_detail": per_recording,
    }
    (folder / "metrics.json").write_text(json.dumps(summary, indent=2))


def unique_stem(name: str, used: set[str]) -> str:
    """A file name from a recording name: safe characters only, numbered when two recordings share one."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "recording"
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate)
    return candidate


def plot_recording(path: Path, model: SensorModel, series: SensorSeries, result: RecordingResult) -> None:
    """Top: the channels that carry most of the alarmed error (z-scored by the model's training statistics, after the
    run adaptation of a model with `adapt_rows`);
    bottom: the per-row score, the threshold, labelled rows shaded, alarmed rows marked."""
    import matplotlib.pyplot as plt

    spec = model.spec
    x = np.arange(len(series.values))
    named = [item["channel"] for item in result.top_channels]
    shown = (named or list(spec.channels))[:MAX_PLOTTED_CHANNELS]
    values = series.values
    if spec.adapt_rows:  # as the graph takes them: each run against its own first rows
        values = adapt_runs(values, series.stretches, spec.adapt_rows, len(spec.channels))[0]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5), sharex=True, height_ratios=(3, 2))
    for name in shown:
        c = spec.channels.index(name)
        top.plot(x, (values[:, c] - spec.channel_mean[c]) / spec.channel_std[c], lw=0.8, label=name)
    top.set_ylabel("reading (training std" + (", runs adapted)" if spec.adapt_rows else ")"))
    top.legend(loc="upper right", fontsize=7)
    bottom.plot(x, result.rows, color="black", lw=0.8, label="row score (mean of covering windows)")
    bottom.axhline(model.metadata.image_threshold, color="red", ls="--", lw=0.8, label="threshold")
    for axis in (top, bottom):
        for start, stop in runs(series.labels if series.labels is not None else np.zeros(len(x), bool)):
            axis.axvspan(start, stop, color="orange", alpha=0.25, lw=0)
    alarmed = np.nonzero(result.verdicts)[0]
    if len(alarmed):
        bottom.plot(alarmed, np.full(len(alarmed), np.nanmax(result.rows)), "|", color="red", ms=6, label="alarm")
    bottom.set_ylabel("score")
    bottom.set_xlabel("row (labelled stretches shaded)")
    bottom.legend(loc="upper right", fontsize=7)
    point = result.point
    fig.suptitle(
        f"{series.name}: point F1 {point.f1:.2f}, FAR {point.far:.1%}, MAR {point.mar:.1%} "
        f"(window {spec.window_length}, level-free {len(spec.level_free_channels)} of {len(spec.channels)})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of true values."""
    padded = np.concatenate([[0], np.asarray(flags, dtype=np.int8), [0]])
    edges = np.diff(padded)
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist(), strict=True))
