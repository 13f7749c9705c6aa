"""What one `run_consumer` call did: counts of records, frames, sensor windows, dead letters, alerts and time."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.writer import Written


@dataclass
class ConsumerStats:
    """What one `run_consumer` call did."""

    records: int = 0  # every record polled, good or not
    frames: int = 0  # frames scored and stored
    defects: int = 0
    dlq: int = 0
    alerts: int = 0
    replayed: int = 0  # records skipped because an earlier run had already stored them
    batches: int = 0
    db_retries: int = 0  # batch transactions retried because the database was unavailable
    seconds: float = 0.0  # whole call, including model load and the group join
    active_seconds: float = 0.0  # from the first record polled to the end of the last batch
    sensor_records: int = 0  # sensor records windowed (not dead-lettered)
    readings: int = 0  # samples in them
    windows: int = 0  # sensor windows scored and new to the database
    sensor_anomalies: int = 0
    gaps: int = 0  # gaps in devices' readings that restarted a window

    @property
    def frames_per_s(self) -> float:
        elapsed = self.active_seconds or self.seconds
        return self.frames / elapsed if elapsed > 0 else 0.0

    @property
    def readings_per_s(self) -> float:
        elapsed = self.active_seconds or self.seconds
        return self.readings / elapsed if elapsed > 0 else 0.0

    def add(self, written: Written) -> None:
        batch = written.batch
        sensors = batch.sensors
        accepted = sensors.records if sensors is not None else 0
        self.records += batch.polled
        self.batches += 1
        self.dlq += batch.polled - len(batch.results) - accepted + written.refused + written.refused_sensors
        self.frames += len(written.fresh)
        self.replayed += len(batch.results) - len(written.fresh) - written.refused
        self.defects += written.defects
        self.alerts += written.alerts
        if sensors is not None:
            self.sensor_records += accepted - written.refused_sensors
            self.readings += sensors.readings
            self.gaps += sensors.gaps
        self.windows += len(written.windows)
        self.sensor_anomalies += written.anomalies
