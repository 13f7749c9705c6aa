"""The run's settings, the stream of frames, and everything random about the run, drawn up front from the seed."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from pipeline.dev.simulator import encode_sim_frame, synthetic_frames
from pipeline.settings import Settings

PARTITIONS = 2
CAMERAS = ["cam-1", "cam-2"]  # camera i is sent to partition i
LIFE_DEADLINE_S = (10.0, 40.0)  # a life that has not reached its kill threshold by then is killed anyway
OUTAGE_KILL_S = (0.5, 4.0)  # a life that meets a database outage is killed this far into it
KILL_JITTER_S = 0.25


@dataclass(frozen=True)
class RunConfig:
    frames: int
    kills: int
    seed: int
    defect_rate: float
    batch_size: int
    pg_outages: int
    pg_down_s: tuple[float, float]
    webhook_down_s: float
    idle_exit_s: float


@dataclass(frozen=True)
class ChaosPlan:
    """Everything random about the run, drawn up front from the seed."""

    kill_at: list[int]  # kill i when this many records are done (and its life has stored a batch), ascending
    kill_deadline_s: list[float]  # or this many seconds into the life, whichever comes first
    kill_in_outage_s: list[float]  # or this many seconds into a PostgreSQL outage (its writer retrying)
    kill_jitter_s: list[float]  # then this much longer, so the kill lands anywhere in the batch cycle
    pg_at: list[int]  # records done that trigger PostgreSQL outage j
    pg_down_s: list[float]
    pg_mode: list[str]  # pg_ctl shutdown mode: fast (clients told) or immediate (a crash, recovery at start)
    webhook_at: int
    webhook_down_s: float


def draw_plan(config: RunConfig) -> ChaosPlan:
    rng = random.Random(config.seed)
    n = config.frames
    kill_at = sorted(int(rng.uniform(0.02, 0.95) * n) for _ in range(config.kills))
    outages = config.pg_outages
    # Outage j falls in its own slice of the stream, so that the outages never overlap.
    pg_at = [int(rng.uniform(0.15 + 0.7 * j / outages, 0.15 + 0.7 * (j + 0.5) / outages) * n) for j in range(outages)]
    return ChaosPlan(
        kill_at=kill_at,
        kill_deadline_s=[rng.uniform(*LIFE_DEADLINE_S) for _ in kill_at],
        kill_in_outage_s=[rng.uniform(*OUTAGE_KILL_S) for _ in kill_at],
        kill_jitter_s=[rng.uniform(0, KILL_JITTER_S) for _ in kill_at],
        pg_at=pg_at,
        pg_down_s=[rng.uniform(*config.pg_down_s) for _ in pg_at],
        pg_mode=["fast" if j % 2 == 0 else "immediate" for j in range(outages)],
        webhook_at=int(rng.uniform(0.05, 0.15) * n),
        webhook_down_s=config.webhook_down_s,
    )


def publish(settings: Settings, config: RunConfig) -> list[str]:
    """Frames from one seeded synthetic stream, alternating cameras and partitions; each frame's ground truth."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings.producer_options(), acks="all", linger_ms=5, batch_size=1 << 20)
    truth = []
    try:
        stream = synthetic_frames(config.seed, 256, config.defect_rate)
        for seq, frame in enumerate(itertools.islice(stream, config.frames)):
            partition = seq % PARTITIONS
            encoded = encode_sim_frame(frame, CAMERAS[partition], "line-1", seq)
            producer.send(
                settings.frames_topic,
                key=encoded.key,
                value=encoded.value,
                headers=encoded.headers,
                partition=partition,
            )
            truth.append(frame.ground_truth)
        producer.flush()
    finally:
        producer.close()
    return truth
