"""Screenshots of the review page for the README: docs/img/review-list.png, review-defect.png and review-rates.png.

    .venv/bin/python scripts/review_screenshots.py              # a fresh SQLite database, seeded as below
    .venv/bin/python scripts/review_screenshots.py --db URL     # any LineGuard database (`lineguard demo` leaves one)

Seeding: twelve hours of the simulator's synthetic frames from three cameras on two lines, one camera drifting to
more defects in the last hours, judged by the real decode and verdict path (pipeline.decode, pipeline.verdict) with a
real ONNX model (--model FILE, or the tests' tiny blur model, tests/pipeline/model_factory.py), stored by the batch
writer's own write_batch; a few defects are then reviewed through the function the page calls. The page is served by
uvicorn on 127.0.0.1 and photographed by Debian's Chromium through Playwright.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pipeline.decode import decode_record
from pipeline.dev.broker import free_port
from pipeline.dev.simulator import synthetic_frame
from pipeline.inference import OnnxModel
from pipeline.review.app import create_app
from pipeline.review.auth import new_token
from pipeline.review.server import background_server
from pipeline.storage.engine import open_database
from pipeline.storage.review import review_defect
from pipeline.storage.store import ModelInfo, register_model, write_batch
from pipeline.storage.tables import Defect
from pipeline.verdict import judge
from pipeline.wire import FrameLimits, encode_frame

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CAMERAS = {"press-1": "line-A", "press-2": "line-A", "weld-1": "line-B"}
LABELS = ["scratch", "dent", "stain", "crack", "missing-part", "other"]
END = datetime.now(UTC).replace(second=0, microsecond=0)  # the verdicts are detected now
HOURS, EVERY_S = 12, 120


@dataclass(frozen=True)
class Record:
    """What decode_record reads from a Kafka record."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def defect_rate(camera: str, at: datetime) -> float:
    # press-2 drifts in the last four hours (a worn die); the others stay near their usual rate
    hours_left = (END - at).total_seconds() / 3600
    return 0.04 + (0.22 * (1 - hours_left / 4) if camera == "press-2" and hours_left < 4 else 0.0)


def seed(sessions: sessionmaker[Session], model_path: Path) -> None:
    model = OnnxModel(model_path, prefer_gpu=False)
    meta = model.metadata
    limits = FrameLimits(max_bytes=8 << 20, max_pixels=40_000_000)
    rng = np.random.default_rng(7)
    offset = 0
    steps = HOURS * 3600 // EVERY_S
    with sessions() as session, session.begin():
        register_model(
            session,
            {
                "model_name": meta.model_name,
                "model_version": meta.model_version,
                "architecture": meta.architecture,
                "image_threshold": meta.image_threshold,
                "pixel_threshold": meta.pixel_threshold,
                "path": str(model_path),
                "provider": "CPUExecutionProvider",
                "first_served_at": END - timedelta(hours=HOURS),
            },
        )
    for step in range(0, steps, 30):  # one batch per hour of frames
        batch = []
        for i in range(step, min(step + 30, steps)):
            at = END - timedelta(seconds=(steps - i) * EVERY_S)
            for camera, line in CAMERAS.items():
                frame = synthetic_frame(rng, 256, defect=bool(rng.random() < defect_rate(camera, at)))
                encoded = encode_frame(
                    frame.image, camera_id=camera, line_id=line, seq=i, captured_at=at, ground_truth=frame.ground_truth
                )
                record = Record("lineguard.frames", 0, offset, encoded.key, encoded.value, list(encoded.headers))
                batch.append(decode_record(record, model, limits))
                offset += 1
        results = judge(model, batch, store_images=True)
        with sessions() as session, session.begin():
            info = ModelInfo(meta.model_name, meta.model_version)
            write_batch(session, "screenshots", results, {("lineguard.frames", 0): offset}, [], [], info, 60)
    with sessions() as session, session.begin():
        ids = list(session.scalars(select(Defect.id).order_by(Defect.captured_at.desc()).limit(12)))
        verdicts = [("confirmed", "scratch"), ("rejected", None), ("confirmed", "dent"), ("confirmed", "scratch")]
        for defect_id, (status, label) in zip(ids[3:], verdicts, strict=False):
            review_defect(session, defect_id, status, label, reviewed_by="ana")


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests" / "pipeline"))
    from model_factory import build_tiny_model

    return build_tiny_model(folder / "tiny.onnx")


def shoot(sessions: sessionmaker[Session], out: Path) -> None:
    with sessions() as session:
        target = session.scalar(select(Defect.id).order_by(Defect.captured_at.desc(), Defect.id.desc()).limit(1))
    if target is None:
        raise SystemExit("the database holds no defects to show")
    app = create_app(sessions, new_token(), labels=LABELS)
    out.mkdir(parents=True, exist_ok=True)
    with background_server(app, free_port()) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"{url}/?per_page=12")
        page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=out / "review-list.png", full_page=True)
        page.goto(f"{url}/defects/{target}")
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        page.wait_for_timeout(200)  # the frame inside the SVG is not in document.images
        page.screenshot(path=out / "review-defect.png", full_page=True)
        page.goto(f"{url}/rates")
        page.screenshot(path=out / "review-rates.png", full_page=True)
        browser.close()
    print(f"wrote {', '.join(str(p) for p in sorted(out.glob('review-*.png')))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="photograph this database instead of seeding a fresh one")
    parser.add_argument("--model", type=Path, help="LineGuard .onnx model to judge the seeded frames")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lineguard-shots-") as folder:
        if args.db:
            _, sessions = open_database(args.db)
        else:
            _, sessions = open_database(f"sqlite:///{Path(folder) / 'review.db'}")
            seed(sessions, args.model or tiny_model(Path(folder)))
        shoot(sessions, args.out)


if __name__ == "__main__":
    main()
