"""The loop end to end, on the real broker and SQLite/PostgreSQL: frames with defects and a new normal appearance are
streamed and stored, reviewers mark the false positives, `retrain` fits the next version on them (tiny budget), the
new model scores them lower, the gate promotes it, and the running consumer switches to it mid-stream without losing
or repeating a frame."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import line_settings, make_topics
from helpers import ConsumerThread, db_totals, wait_for
from sqlalchemy import select

from pipeline.dev.simulator import publish_frames, synthetic_frame
from pipeline.registry.gate import PromotionRequest, promote
from pipeline.storage.engine import open_database
from pipeline.storage.review import review_defect
from pipeline.storage.tables import Defect, ModelVersion

pytestmark = pytest.mark.integration
SIZE = 128  # frames on the wire; the models run at 64 px


def stripes(rng: np.random.Generator) -> np.ndarray:
    """The line's new normal look (a ribbed part, say): the smooth surface with fine vertical ribs."""
    image = synthetic_frame(rng, SIZE).image.astype(np.float32)
    return np.clip(image + 30 * np.sin(2 * np.pi * np.arange(SIZE) / 10.0), 0, 255).astype(np.uint8)


def write_frames(folder: Path, seed: int, good: int, ribbed: int, defects: int) -> int:
    """A stream folder: the parent folder names each frame's ground truth (the simulator's header)."""
    rng = np.random.default_rng(seed)
    kinds = {
        "good": [synthetic_frame(rng, SIZE).image for _ in range(good)],
        "ribbed": [stripes(rng) for _ in range(ribbed)],
        "defect": [synthetic_frame(rng, SIZE, defect=True).image for _ in range(defects)],
    }
    for kind, images in kinds.items():
        (folder / kind).mkdir(parents=True)
        for index, image in enumerate(images):
            cv2.imwrite(str(folder / kind / f"{index:03d}.png"), image)
    return good + ribbed + defects


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model, normal folder): a scratch `cae` at 64 px trained for seconds on smooth normal frames only."""
    pytest.importorskip("torch")
    from training.config import TrainConfig
    from training.train import train

    root = tmp_path_factory.mktemp("base")
    normal = root / "normal"
    normal.mkdir()
    rng = np.random.default_rng(1)
    for index in range(40):
        cv2.imwrite(str(normal / f"{index:03d}.png"), synthetic_frame(rng, SIZE).image)
    config = TrainConfig(
        data_dir=normal,
        out=root / "line-v1.onnx",
        model="cae",
        backbone="none",
        size=64,
        epochs=15,
        batch_size=8,
        val_fraction=0.25,
        model_name="line",
        model_version="1",
        show_progress=False,
    )
    return train(config), normal


def test_review_retrain_promote_and_the_line_switches(
    bootstrap: str, db_url: str, base_model: tuple[Path, Path], tmp_path: Path
) -> None:
    from training.retrain import RetrainConfig, retrain

    base, normal = base_model
    first = write_frames(tmp_path / "stream-1", seed=2, good=16, ribbed=16, defects=10)
    second = write_frames(tmp_path / "stream-2", seed=3, good=10, ribbed=20, defects=10)
    _, sessions = open_database(db_url)
    assert promote(sessions, PromotionRequest(base, decided_by="test")).outcome == "initial"
    settings = line_settings(
        bootstrap,
        db_url,
        base,
        model_source="registry",
        model_reload_check_s=0.3,
        frame_store_url=str(tmp_path / "frames"),
    )
    make_topics(settings)
    consumer = ConsumerThread(settings).start()
    try:
        publish_frames(settings, source=str(tmp_path / "stream-1"), count=first, seed=4)
        wait_for(lambda: db_totals(db_url)[0] == first, timeout=120, what="the first stream stored")

        # reviewers: flagged normal frames (ribbed or plain) are false positives, the rest confirmed
        with sessions() as session, session.begin():
            flagged = session.execute(select(Defect.id, Defect.ground_truth)).all()
            for defect_id, truth in flagged:
                review_defect(session, defect_id, status="confirmed" if truth == "defect" else "rejected")
        false_positives = sum(truth != "defect" for _, truth in flagged)
        assert false_positives >= 10  # v1 never saw the ribbed look

        out = tmp_path / "line-v2.onnx"
        report = retrain(RetrainConfig(db_url=db_url, base=base, normal_dir=normal, out=out, model_version="2"))
        fp_scores = [f for f in report.frames if f["group"] == "reviewed_false_positive"]
        assert len(fp_scores) == false_positives and report.counts["confirmed_defect"] > 0
        lower = sum(f["candidate_score"] < f["base_score"] for f in fp_scores)
        before = np.mean([f["base_score"] for f in fp_scores])
        after = np.mean([f["candidate_score"] for f in fp_scores])
        print(f"false positives: {lower}/{len(fp_scores)} scored lower, mean {before:.4f} -> {after:.4f}")
        print(f"gate: base {report.base.gated()} new {report.candidate.gated()}")
        assert lower >= 0.75 * len(fp_scores) and after < before  # training is not bit-for-bit repeatable on CPU
        assert report.candidate.false_positive_rate is not None and report.base.false_positive_rate == 1.0
        assert report.candidate.false_positive_rate < 0.5
        for suffix in (".report.json", ".report.md", ".roc.png", ".evalset.json"):
            assert out.with_name(out.name + suffix).stat().st_size > 0

        # the second stream flows while v2 is promoted: the consumer switches between two batches
        publisher = threading.Thread(
            target=publish_frames,
            args=(settings,),
            kwargs={"source": str(tmp_path / "stream-2"), "count": second, "seed": 5, "rate": 10.0},
        )
        publisher.start()
        wait_for(lambda: db_totals(db_url)[0] >= first + 12, timeout=60, what="part of the second stream under v1")
        decision = promote(sessions, PromotionRequest(out, decided_by="test"))
        assert decision.outcome == "promoted", decision.message
        publisher.join(60)
        wait_for(lambda: db_totals(db_url)[0] == first + second, timeout=120, what="the second stream stored")
    finally:
        stats = consumer.stop()

    total = first + second
    assert (stats.frames, stats.dlq, stats.replayed) == (total, 0, 0)
    frames, defect_rows, distinct = db_totals(db_url)
    assert frames == total and defect_rows == distinct
    with sessions() as session:
        by_offset = session.execute(select(Defect.source_offset, Defect.model_version).order_by(Defect.source_offset))
        versions = [version for _, version in by_offset]
        served = set(session.scalars(select(ModelVersion.model_version)))
    assert served == {"1", "2"}
    switch = versions.index("2")
    assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}  # one switch, between batches
