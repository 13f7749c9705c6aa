"""`lineguard cluster` end to end on real defects: magnetic_tile's labelled defect images are scored by a trained
scoring model, stored as the line stores defects (frame PNG, regions from the anomaly map: pipeline.verdict), and
clustered by the command itself; the true type (kept in `ground_truth`, as the simulator does) is only read back
afterwards to measure the agreement.

    .venv/bin/python bench/bench_cluster_cli.py --model /tmp/lineguard-bench-embeddings/reverse-distillation.onnx

The model needs its encoder beside it (bench/bench_embeddings.py leaves both in its --workdir). Writes
bench/results/cluster-cli-*.json and copies the largest cluster's contact sheet to docs/img/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
from sklearn.metrics import adjusted_rand_score
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.cli.app import build_app
from pipeline.inference import OnnxModel
from pipeline.preprocess import preprocess, read_image
from pipeline.results import FrameResult, Source
from pipeline.storage.engine import open_database
from pipeline.storage.store import ModelInfo, write_batch
from pipeline.storage.tables import Defect
from pipeline.verdict import find_regions

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "magnetic_tile"
T0 = datetime(2026, 12, 5, tzinfo=UTC)


def stored_defects(model: OnnxModel, data: Path) -> list[FrameResult]:
    """One defect row per labelled test image, with the regions the line would find on it."""
    spec, meta = model.metadata.input_spec, model.metadata
    results = []
    for offset, path in enumerate(sorted(p for p in (data / "test").glob("*/*.png") if p.parent.name != "good")):
        frame = read_image(path)
        scores = model.score(preprocess(frame, spec)[None])
        regions = [r.as_dict() for r in find_regions(scores.anomaly_map[0], meta.pixel_threshold, frame.shape, spec)]
        ok, png = cv2.imencode(".png", frame)
        assert ok
        results.append(
            FrameResult(
                source=Source("frames", 0, offset),
                camera_id="tile-cam",
                line_id="line-1",
                seq=offset,
                captured_at=T0 + timedelta(seconds=offset),
                detected_at=T0 + timedelta(seconds=offset, milliseconds=50),
                score=float(scores.score[0]),
                threshold=meta.image_threshold,
                is_defect=True,
                regions=regions,
                frame=png.tobytes(),
                frame_content_type="image/png",
                ground_truth=path.parent.name,
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="scoring model with <model>.encoder.onnx beside it")
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lg-cluster-cli-"))
    url = f"sqlite:///{work / 'lineguard.db'}"
    model = OnnxModel(args.model, prefer_gpu=False)
    results = stored_defects(model, DATA)
    _, sessions = open_database(url)
    with sessions() as session, session.begin():
        info = ModelInfo(model.metadata.model_name, model.metadata.model_version)
        write_batch(session, "bench", results, {("frames", 0): len(results)}, [], [], info, 60)
    started = time.perf_counter()
    argv = ["cluster", "--db", url, "--model", str(args.model), "--k", str(args.k), "--out", str(work / "clusters")]
    done = CliRunner().invoke(build_app(), argv)
    seconds = time.perf_counter() - started
    assert done.exit_code == 0, done.output
    with sessions() as session:
        rows = session.execute(select(Defect.cluster, Defect.ground_truth, Defect.regions)).all()
    report = json.loads((work / "clusters" / "clusters.json").read_text())
    per_cluster = {}
    for cluster, truth, _ in rows:
        per_cluster.setdefault(str(cluster), {}).setdefault(truth, 0)
        per_cluster[str(cluster)][truth] += 1
    largest = max(report["sizes"], key=lambda c: report["sizes"][c])
    sheet = ROOT / "docs" / "img" / "cluster_cli_magnetic_tile.png"
    shutil.copy(work / "clusters" / f"cluster_{largest}.png", sheet)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": f"{model.metadata.architecture} {model.metadata.model_version}",
        "command": " ".join([*argv[:1], "--db", "URL", *argv[3:]]),
        "output": done.output.strip().splitlines(),
        "defects": len(rows),
        "with_regions": sum(1 for _, _, regions in rows if regions),
        "seconds": round(seconds, 1),
        "silhouette": report["silhouette"],
        "adjusted_rand": adjusted_rand_score([t for _, t, _ in rows], [c for c, _, _ in rows]),
        "types_per_cluster": per_cluster,
        "sheet": str(sheet.relative_to(ROOT)),
    }
    out = ROOT / "bench" / "results" / f"cluster-cli-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
