"""Consumers following the registry (`model_source=registry`): a thread reads the active version of the serving
model's name every `model_reload_check_s`, and the loop's reload check swaps it in through `ModelHolder`.

The loop never waits on the database for this: it only reads what the thread last found. While the database is
down the thread keeps its last answer, so the line goes on serving (and reloading a changed file) without it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import ConfigError, ModelLoadError
from pipeline.inference import ModelHolder, ModelTarget, file_sha256, read_metadata
from pipeline.settings import Settings
from pipeline.storage.registry import active_target

log = logging.getLogger(__name__)


class ActiveModelWatcher:
    """Polls the active version of one model name on its own thread; `wanted()` answers from memory."""

    def __init__(self, sessions: sessionmaker[Session], model_name: str, interval_s: float) -> None:
        self.sessions = sessions
        self.model_name = model_name
        self.interval_s = interval_s
        self._wanted: ModelTarget | None = None
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-watch", daemon=True)

    def start(self) -> ActiveModelWatcher:
        self.check()  # the first answer before the first batch
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wanted(self) -> ModelTarget | None:
        return self._wanted

    def check(self) -> None:
        """One read of the registry; a failure keeps the last answer and is logged once per outage."""
        try:
            with self.sessions() as session:
                target = active_target(session, self.model_name)
        except Exception as exc:  # any database failure: the consumer serves on with what it has
            if not self._failing:
                log.warning("model registry unreadable (%s: %s); serving on", type(exc).__name__, exc)
            self._failing = True
            return
        if self._failing:
            log.info("model registry readable again")
        self._failing = False
        wanted = ModelTarget(Path(target.path), target.file_sha256) if target is not None else None
        if wanted != self._wanted and wanted is not None:
            log.info("registry: active %s version is v%s (%s)", self.model_name, target.model_version, target.path)
        self._wanted = wanted

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()


def serving_model_path(settings: Settings, sessions: sessionmaker[Session]) -> Path | None:
    """The image model file a consumer starts with (None: it serves no image model): `model_path`; with
    `model_source=registry`, the active version of that model's name when there is one (or, without `model_path`,
    the most recently activated image model of any name; none is an error unless a sensor model serves)."""
    given = Path(settings.model_path) if settings.model_path is not None else None
    if settings.model_source == "file":
        return given
    path = registry_start(sessions, given, "image")
    if path is None and settings.sensor_model_path is None:
        raise ConfigError("no model: no --model, and the registry has no active version (`lineguard models promote`)")
    return path


def serving_sensor_model_path(settings: Settings, sessions: sessionmaker[Session]) -> Path | None:
    """The sensor model file a consumer starts with: `sensor_model_path`, or with `model_source=registry` the active
    version of that model's name when there is one."""
    given = settings.sensor_model_path
    if given is None or settings.model_source == "file":
        return given
    return registry_start(sessions, Path(given), "sensor")


def registry_start(sessions: sessionmaker[Session], given: Path | None, kind: str) -> Path | None:
    """The active version of `given`'s model name (without `given`: of any name of that kind), checked against its
    registered sha256; `given` itself when none is active."""
    with sessions() as session:
        target = active_target(session, read_metadata(given).model_name if given is not None else None, kind)
    if target is None:
        return given
    if not Path(target.path).is_file():
        raise ModelLoadError(target.path, "the registry's active version: file not found")
    if file_sha256(Path(target.path)) != target.file_sha256:
        raise ModelLoadError(target.path, f"file differs from the registered one (sha256 {target.file_sha256[:12]})")
    return Path(target.path)


def follow_registry(
    settings: Settings, sessions: sessionmaker[Session], holder: ModelHolder[Any] | None
) -> Callable[[], None]:
    """With `model_source=registry`, make `holder` (an image or sensor model's) follow the active version of its
    model's name; returns the stop."""
    if settings.model_source != "registry" or holder is None:
        return lambda: None
    name = holder.model.metadata.model_name
    watcher = ActiveModelWatcher(sessions, name, settings.model_reload_check_s).start()
    holder.follow = watcher.wanted
    return watcher.stop
