"""`lineguard cluster`: embed stored defect crops with a model's encoder, cluster them, write the cluster ids to the
defect rows and one contact sheet per cluster."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from pipeline.frames.store import FrameStore
from pipeline.latent.clustering import NOISE, Clustering, cluster_embeddings, require_sklearn
from pipeline.latent.crops import Crop, iter_crops
from pipeline.latent.runtime import Encoder
from pipeline.latent.sheets import contact_sheet, write_png
from pipeline.storage.clusters import write_clusters
from pipeline.storage.review import DefectFilter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterConfig:
    """What to cluster and how; `out` receives cluster_<id>.png sheets and clusters.json."""

    model: Path
    out: Path
    method: str = "kmeans"
    k: int = 8
    eps: float | None = None
    min_samples: int = 5
    where: DefectFilter = field(default_factory=DefectFilter)
    limit: int = 5000
    per_sheet: int = 36
    seed: int = 0


@dataclass(frozen=True)
class ClusterReport:
    """What a clustering found: sizes per cluster id (-1 = noise), silhouette, defects left out, files written."""

    method: str
    embedded: int
    skipped: int
    sizes: dict[int, int]
    silhouette: float | None
    sheets: list[str]

    def to_dict(self) -> dict[str, object]:
        return {**self.__dict__, "sizes": {str(k): v for k, v in self.sizes.items()}}


def cluster_defects(sessions: sessionmaker[Session], store: FrameStore | None, cfg: ClusterConfig) -> ClusterReport:
    """Embed, cluster, write ids in one transaction (earlier ids cleared), then the sheets and clusters.json."""
    require_sklearn()  # before minutes of embedding, not after
    encoder = Encoder(cfg.model)
    crops, skipped = embed_crops(sessions, store, encoder, cfg)
    embeddings = np.stack([e for _, e in crops]) if crops else np.zeros((0, 1), np.float32)
    clustering = cluster_embeddings(embeddings, cfg.method, cfg.k, cfg.eps, cfg.min_samples, cfg.seed)
    ids = [crop.defect_id for crop, _ in crops]
    with sessions() as session, session.begin():
        write_clusters(session, dict(zip(ids, clustering.labels.tolist(), strict=True)))
    sheets = write_sheets([crop for crop, _ in crops], clustering, cfg)
    sizes = {c: int((clustering.labels == c).sum()) for c in clustering.clusters}
    report = ClusterReport(cfg.method, len(ids), skipped, sizes, clustering.silhouette, [str(p) for p in sheets])
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "clusters.json").write_text(
        json.dumps(report.to_dict() | {"defects": dict(zip(map(str, ids), clustering.labels.tolist(), strict=True))})
    )
    return report


def embed_crops(
    sessions: sessionmaker[Session], store: FrameStore | None, encoder: Encoder, cfg: ClusterConfig, chunk: int = 32
) -> tuple[list[tuple[Crop, np.ndarray]], int]:
    """(crop, embedding) per defect with a usable frame, and how many had none. Crops are kept for the sheets as
    small thumbnails only, so memory stays bounded by the defect count, not the frame size."""
    kept: list[tuple[Crop, np.ndarray]] = []
    pending: list[Crop] = []
    skipped = 0

    def flush() -> None:
        embeddings = encoder.embed([c.pixels for c in pending], [c.camera_id for c in pending])
        kept.extend((thumbnail(c), e) for c, e in zip(pending, embeddings, strict=True))
        pending.clear()

    for item in iter_crops(sessions, cfg.where, store, cfg.limit):
        if isinstance(item, int):
            skipped += 1
            continue
        pending.append(item)
        if len(pending) == chunk:
            flush()
    if pending:
        flush()
    if skipped:
        log.warning("%d defects left out: frame missing or not a PNG/JPEG image", skipped)
    return kept, skipped


def thumbnail(crop: Crop, side: int = 96) -> Crop:
    height, width = crop.pixels.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return crop
    small = cv2.resize(crop.pixels, (max(1, round(width * scale)), max(1, round(height * scale))), cv2.INTER_AREA)
    return Crop(crop.defect_id, crop.camera_id, crop.label, small)


def write_sheets(crops: list[Crop], clustering: Clustering, cfg: ClusterConfig) -> list[Path]:
    """cluster_<id>.png per cluster (noise: cluster_noise.png), members nearest the cluster's mean first; the sheets
    of an earlier run in the folder go first, so that none is left to pass for one of this run's clusters."""
    for stale in cfg.out.glob("cluster_*.png"):
        stale.unlink()
    written = []
    for cluster in clustering.clusters:
        chosen = clustering.representatives(cluster, cfg.per_sheet)
        sheet = contact_sheet([crops[i].pixels for i in chosen], [f"#{crops[i].defect_id}" for i in chosen])
        name = "cluster_noise.png" if cluster == NOISE else f"cluster_{cluster}.png"
        written.append(write_png(cfg.out / name, sheet))
    return written
